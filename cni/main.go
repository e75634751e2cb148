// paddock-egress is a chained CNI plugin: in the network namespace of each sandbox Pod it applies
// paddock's egress script (every outbound TCP connection of every user but the vault's to the
// vault's transparent port, DNS to the Pod's nameservers, nothing else out) before any container
// of the Pod starts. Other Pods pass through untouched.
//
// The script is not written here: `paddock cni-install` renders it from paddock/egress.py and puts
// it in this plugin's entry of the conflist, with its SHA-256. A sandbox Pod names the digest it
// expects in its annotation paddock.dev/egress ("cni/<first 16 hex digits>"), so a node whose
// script differs from the operator's refuses the Pod instead of starting it with other rules.
// Any failure is a CNI ADD error: the kubelet retries, and the Pod never runs unredirected.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
)

// Annotation marks a sandbox Pod whose egress this plugin must redirect.
const Annotation = "paddock.dev/egress"

// PodAnnotations is the capability under which containerd (and CRI-O) pass a Pod's annotations.
const PodAnnotations = "io.kubernetes.cri.pod-annotations"

// Conf is this plugin's entry in the conflist, plus what the runtime adds to it.
type Conf struct {
	types.NetConf
	Script    string `json:"script"`
	Digest    string `json:"digest"`
	IPTables  string `json:"iptables,omitempty"`
	IP6Tables string `json:"ip6tables,omitempty"`
	Shell     string `json:"shell,omitempty"`

	RuntimeConfig struct {
		Annotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
		DNS         struct {
			Servers []string `json:"servers,omitempty"`
		} `json:"dns,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

func parse(stdin []byte) (*Conf, error) {
	conf := &Conf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, fmt.Errorf("paddock-egress: bad configuration: %w", err)
	}
	if err := version.ParsePrevResult(&conf.NetConf); err != nil {
		return nil, fmt.Errorf("paddock-egress: bad prevResult: %w", err)
	}
	return conf, nil
}

// digest is how a Pod names the script it expects: the first 16 hex digits of its SHA-256.
func digest(script string) string {
	sum := sha256.Sum256([]byte(script))
	return hex.EncodeToString(sum[:])[:16]
}

// wanted says whether the Pod is a sandbox, and refuses one this node cannot serve as it asks.
func (c *Conf) wanted() (bool, error) {
	value, marked := c.RuntimeConfig.Annotations[Annotation]
	if !marked {
		return false, nil
	}
	if c.Script == "" {
		return true, fmt.Errorf("paddock-egress: no script in the plugin's configuration")
	}
	if got := digest(c.Script); got != c.Digest {
		return true, fmt.Errorf("paddock-egress: the configured script's digest is %s, not %s", got, c.Digest)
	}
	if value != "cni/"+c.Digest {
		return true, fmt.Errorf(
			"paddock-egress: the Pod asks for egress %q but this node applies cni/%s "+
				"(operator and node plugin are different versions)", value, c.Digest)
	}
	return true, nil
}

// nameservers are the Pod's DNS servers (the runtime's "dns" capability), checked to be addresses.
func (c *Conf) nameservers() (string, error) {
	for _, server := range c.RuntimeConfig.DNS.Servers {
		if net.ParseIP(server) == nil {
			return "", fmt.Errorf("paddock-egress: nameserver %q is not an IP address", server)
		}
	}
	return strings.Join(c.RuntimeConfig.DNS.Servers, " "), nil
}

func orDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}

// apply runs the script in the Pod's network namespace (the child inherits the locked thread's).
func (c *Conf) apply(netnsPath string) error {
	servers, err := c.nameservers()
	if err != nil {
		return err
	}
	netns, err := ns.GetNS(netnsPath)
	if err != nil {
		return fmt.Errorf("paddock-egress: opening %s: %w", netnsPath, err)
	}
	defer netns.Close()
	var output bytes.Buffer
	runErr := netns.Do(func(ns.NetNS) error {
		cmd := exec.Command(orDefault(c.Shell, "/bin/sh"), "-c", c.Script)
		cmd.Env = []string{
			"PATH=" + orDefault(os.Getenv("PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
			"IPTABLES=" + orDefault(c.IPTables, "iptables"),
			"IP6TABLES=" + orDefault(c.IP6Tables, "ip6tables"),
			"PADDOCK_NAMESERVERS=" + servers,
		}
		cmd.Stdout, cmd.Stderr = &output, &output
		return cmd.Run()
	})
	if runErr != nil {
		return fmt.Errorf("paddock-egress: the egress script failed (%v): %s",
			runErr, strings.TrimSpace(output.String()))
	}
	return nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return fmt.Errorf("paddock-egress: must be chained after a plugin that sets up the interface")
	}
	sandbox, err := conf.wanted()
	if err != nil {
		return err
	}
	if sandbox {
		if err := conf.apply(args.Netns); err != nil {
			return err
		}
	}
	result, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("paddock-egress: converting prevResult: %w", err)
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// cmdDel has nothing to undo: the rules live and die with the Pod's network namespace.
func cmdDel(_ *skel.CmdArgs) error { return nil }

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	_, err = conf.wanted()
	return err
}

func main() {
	skel.PluginMainFuncs(
		skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck},
		version.All,
		"paddock-egress: sandbox Pods' egress through the vault",
	)
}
