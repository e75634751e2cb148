"""paddock-netpol: pod networking and NetworkPolicy enforcement for paddock's kind node image.

Every NetworkPolicy enforcer that works on a kernel without NFQUEUE (kube-router, Calico, Weave,
Antrea, kube-network-policies) is out of reach of a machine that may only use the Go module
proxy, so the kind cluster paddock develops on runs this instead. One process per node (a
host-network DaemonSet, stdlib only):

- writes the node's CNI configuration (ptp + host-local over the node's podCIDR), routes to the
  other nodes' podCIDRs, and masquerades traffic from Pods to outside the Pod network;
- compiles every NetworkPolicy into iptables rules and ipsets for the Pods on this node and
  applies them atomically (iptables-restore, ipset restore) whenever the result changes.

With ptp every Pod packet is routed by the node, so the FORWARD chain sees Pod-to-Pod and
Pod-to-outside traffic after kube-proxy's DNAT (policies are matched against Pod addresses, as
the API says), and INPUT sees Pods talking to the node itself. Traffic from the node to its Pods
(kubelet probes) is never filtered. Replies of allowed connections pass by conntrack state.
IPv4 only. Not a general-purpose CNI: it exists so that paddock's sandbox policies are enforced
on a development cluster, and it is tested there (tests/e2e).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("paddock-netpol")

Obj = Mapping[str, Any]

FILTER_CHAIN = "PADDOCK-NETPOL"
INPUT_CHAIN = "PADDOCK-NETPOL-INPUT"
NAT_CHAIN = "PADDOCK-NETPOL-MASQ"
PREFIX = "PNP-"  # per-Pod chains and ipsets
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# --- label selectors and policy semantics (pure) ---------------------------------------------


_OPERATORS = {
    "In": lambda labels, key, values: labels.get(key) in values,
    "NotIn": lambda labels, key, values: labels.get(key) not in values,
    "Exists": lambda labels, key, values: key in labels,
    "DoesNotExist": lambda labels, key, values: key not in labels,
}


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector; None selects nothing, {} selects everything."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(
        _OPERATORS[e["operator"]](labels, e["key"], e.get("values") or [])
        for e in selector.get("matchExpressions") or []
    )


def policy_types(policy: Obj) -> set[str]:
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    node: str
    ports: Mapping[tuple[str, str], int]  # (name, protocol) -> containerPort

    @classmethod
    def of(cls, pod: Obj) -> PodInfo | None:
        spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
        if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
            return None
        ips = [p.get("ip", "") for p in status.get("podIPs") or []] or [status.get("podIP", "")]
        ip = next((i for i in ips if i and ipaddress.ip_address(i).version == 4), None)
        if ip is None:
            return None
        ports = {
            (p["name"], p.get("protocol", "TCP")): p["containerPort"]
            for c in spec.get("containers") or []
            for p in c.get("ports") or []
            if p.get("name")
        }
        return cls(
            meta["namespace"],
            meta["name"],
            ip,
            meta.get("labels") or {},
            spec.get("nodeName", ""),
            ports,
        )


@dataclass
class Ruleset:
    """What one node should have: ipsets by name, and the lines of the filter and nat tables."""

    sets: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (type, entries)
    filter_lines: list[str] = field(default_factory=list)
    nat_lines: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)

    def add_set(self, kind: str, entries: Iterable[str]) -> str:
        members = sorted(set(entries))
        digest = hashlib.sha256(f"{kind} {' '.join(members)}".encode()).hexdigest()[:20]
        name = f"{PREFIX}{digest}"
        self.sets[name] = (kind, members)
        return name


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def _v4_nets(cidr: str) -> list[str]:
    """hash:net cannot hold /0: split it in halves. IPv6 blocks are dropped (IPv4 only)."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version != 4:
        return []
    if net.prefixlen == 0:
        return ["0.0.0.0/1", "128.0.0.0/1"]
    return [str(net)]


class Compiler:
    """Compiles the cluster's NetworkPolicies into the ruleset of one node."""

    def __init__(
        self,
        node: str,
        pods: list[Obj],
        namespaces: list[Obj],
        policies: list[Obj],
    ) -> None:
        self.node = node
        self.pods = [p for p in (PodInfo.of(pod) for pod in pods) if p is not None]
        self.ns_labels = {
            ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in namespaces
        }
        self.policies = sorted(
            policies, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])
        )
        self.rules = Ruleset()

    def peer_pods(self, policy: Obj, peer: Obj) -> list[PodInfo]:
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        namespace = policy["metadata"]["namespace"]
        out = []
        for pod in self.pods:
            if ns_sel is not None:
                if not selects(ns_sel, self.ns_labels.get(pod.namespace, {})):
                    continue
            elif pod.namespace != namespace:
                continue
            if pod_sel is not None and not selects(pod_sel, pod.labels):
                continue
            out.append(pod)
        return out

    def port_matches(self, ports: list[Obj], resolve: PodInfo | None) -> list[str] | None:
        """iptables matches for a rule's ports (None: a named port that resolves to nothing)."""
        if not ports:
            return [""]
        out = []
        for port in ports:
            proto = port.get("protocol", "TCP")
            number = port.get("port")
            if isinstance(number, str):
                if resolve is None or (number, proto) not in resolve.ports:
                    continue
                number = resolve.ports[(number, proto)]
            match = f"-p {proto.lower()}"
            if number is not None:
                end = port.get("endPort")
                match += f" -m {proto.lower()} --dport {number}" + (f":{end}" if end else "")
            out.append(match)
        return out or None

    def allow_lines(self, chain: str, pod: PodInfo, policy: Obj, rule: Obj, direction: str) -> None:
        """One RETURN per (peer, port) of one ingress or egress rule."""
        peers = rule.get("from" if direction == "Ingress" else "to") or []
        flag = "src" if direction == "Ingress" else "dst"
        ports = rule.get("ports") or []
        named = any(isinstance(p.get("port"), str) for p in ports)
        targets: list[tuple[str, PodInfo | None]] = []  # (peer match, pod whose ports resolve)
        if not peers:
            targets.append(("", pod if direction == "Ingress" else None))
        for peer in peers:
            if "ipBlock" in peer:
                block = peer["ipBlock"]
                nets = _v4_nets(block["cidr"])
                if not nets:
                    continue
                entries = nets + [
                    f"{n} nomatch" for e in block.get("except") or [] for n in _v4_nets(e)
                ]
                name = self.rules.add_set("hash:net", entries)
                targets.append(
                    (f"-m set --match-set {name} {flag}", pod if direction == "Ingress" else None)
                )
                continue
            members = self.peer_pods(policy, peer)
            if direction == "Egress" and named:
                targets += [(f"-d {m.ip}/32", m) for m in members]
            elif members:
                name = self.rules.add_set("hash:ip", (m.ip for m in members))
                targets.append(
                    (f"-m set --match-set {name} {flag}", pod if direction == "Ingress" else None)
                )
        for peer_match, resolve in targets:
            for port_match in self.port_matches(ports, resolve) or []:
                parts = [f"-A {chain}", peer_match, port_match, "-j RETURN"]
                self.rules.filter_lines.append(" ".join(p for p in parts if p))

    def compile(self) -> Ruleset:
        jumps: list[str] = []
        input_jumps: list[str] = []
        for pod in sorted(self.pods, key=lambda p: (p.namespace, p.name)):
            if pod.node != self.node:
                continue
            for direction in ("Egress", "Ingress"):
                selecting = [
                    pol
                    for pol in self.policies
                    if pol["metadata"]["namespace"] == pod.namespace
                    and direction in policy_types(pol)
                    and selects((pol.get("spec") or {}).get("podSelector", {}), pod.labels)
                ]
                if not selecting:
                    continue
                chain = f"{PREFIX}{direction[0]}-{_digest(pod.namespace, pod.name, pod.ip)}"
                self.rules.chains.append(chain)
                key = "ingress" if direction == "Ingress" else "egress"
                for pol in selecting:
                    for rule in (pol.get("spec") or {}).get(key) or []:
                        self.allow_lines(chain, pod, pol, rule, direction)
                self.rules.filter_lines.append(
                    f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset"
                )
                self.rules.filter_lines.append(f"-A {chain} -j REJECT")
                if direction == "Egress":
                    jumps.append(f"-A {FILTER_CHAIN} -s {pod.ip}/32 -j {chain}")
                    input_jumps.append(f"-A {INPUT_CHAIN} -s {pod.ip}/32 -j {chain}")
                else:
                    jumps.append(f"-A {FILTER_CHAIN} -d {pod.ip}/32 -j {chain}")
        established = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
        self.rules.filter_lines[:0] = [
            f"-A {FILTER_CHAIN} {established}",
            *jumps,
            f"-A {INPUT_CHAIN} {established}",
            *input_jumps,
        ]
        return self.rules


def masquerade_lines(pod_subnet: str) -> list[str]:
    """Pods reach outside the Pod network from the node's address; Pod-to-Pod keeps its source."""
    return [
        f"-A {NAT_CHAIN} -d {pod_subnet} -j RETURN",
        f"-A {NAT_CHAIN} -m addrtype --dst-type LOCAL -j RETURN",
        f"-A {NAT_CHAIN} -s {pod_subnet} -j MASQUERADE --random-fully",
    ]


def cni_config(pod_cidr: str) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "name": "paddock",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "dataDir": "/run/cni-ipam-state",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": pod_cidr}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


# --- the node: API reads, iptables and ipset writes ------------------------------------------


class KubeLister:
    """The few list calls this needs, with the Pod's service account (stdlib only)."""

    def __init__(self) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.ctx = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")

    def list(self, path: str) -> list[Obj]:
        with open(f"{SA_DIR}/token") as f:
            token = f.read().strip()
        req = urllib.request.Request(  # noqa: S310 - an https URL built from the in-cluster env
            self.base + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:  # noqa: S310
            items: list[Obj] = json.load(resp)["items"]
            return items


def run(args: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def ensure_jump(table: str, parent: str, chain: str) -> None:
    """Our chain first in `parent`, before kube-proxy's accepts of marked service traffic."""
    rules = run(["iptables", "-t", table, "-S", parent]).splitlines()
    mine = f"-A {parent} -j {chain}"
    if len(rules) > 1 and rules[1] == mine:
        return
    while mine in rules:
        run(["iptables", "-t", table, "-D", parent, "-j", chain])
        rules.remove(mine)
    run(["iptables", "-t", table, "-I", parent, "1", "-j", chain])


def ensure_jumps() -> None:
    ensure_jump("filter", "FORWARD", FILTER_CHAIN)
    ensure_jump("filter", "INPUT", INPUT_CHAIN)
    ensure_jump("nat", "POSTROUTING", NAT_CHAIN)


def apply(rules: Ruleset) -> None:
    existing_sets = set(run(["ipset", "list", "-n"]).split())
    restore = []
    for name, (kind, entries) in sorted(rules.sets.items()):
        if name in existing_sets:
            continue  # named by their content: an existing set is already right
        restore.append(f"create {name} {kind} family inet")
        restore += [f"add {name} {entry}" for entry in entries]
    if restore:
        run(["ipset", "restore"], "\n".join(restore) + "\n")
    existing_chains = {
        line[1:].split()[0]
        for line in run(["iptables-save", "-t", "filter"]).splitlines()
        if line.startswith(f":{PREFIX}")
    }
    stale = sorted(existing_chains - set(rules.chains))
    text = ["*filter", f":{FILTER_CHAIN} - [0:0]", f":{INPUT_CHAIN} - [0:0]"]
    text += [f":{c} - [0:0]" for c in rules.chains]
    text += rules.filter_lines
    text += ["COMMIT", "*nat", f":{NAT_CHAIN} - [0:0]", *rules.nat_lines, "COMMIT", ""]
    run(["iptables-restore", "--noflush"], "\n".join(text))
    # Chains of Pods that are gone: only now unreferenced (nf_tables refuses to delete a chain in
    # the transaction that drops its last reference).
    if stale:
        flush = [f":{c} - [0:0]" for c in stale] + [f"-X {c}" for c in stale]
        run(["iptables-restore", "--noflush"], "\n".join(["*filter", *flush, "COMMIT", ""]))
    ensure_jumps()
    for name in sorted(existing_sets - set(rules.sets)):
        if name.startswith(PREFIX):
            run(["ipset", "destroy", name])


def setup_node(kube: KubeLister, node_name: str, cni_dir: str) -> None:
    """The CNI configuration for this node's podCIDR and routes to the other nodes' Pods."""
    nodes = kube.list("/api/v1/nodes")
    for node in nodes:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if not cidr:
            continue
        if node["metadata"]["name"] == node_name:
            path = os.path.join(cni_dir, "10-paddock.conflist")
            text = json.dumps(cni_config(cidr), indent=2)
            try:
                with open(path) as f:
                    if f.read() == text:
                        continue
            except FileNotFoundError:
                pass
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            log.info("wrote %s for podCIDR %s", path, cidr)
            continue
        addr = next(
            (
                a["address"]
                for a in node["status"].get("addresses", [])
                if a["type"] == "InternalIP"
            ),
            None,
        )
        if addr and ipaddress.ip_address(addr).version == 4:
            run(["ip", "route", "replace", cidr, "via", addr])


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    node_name = os.environ["NODE_NAME"]
    pod_subnet = os.environ["POD_SUBNET"]
    cni_dir = os.environ.get("CNI_CONF_DIR", "/etc/cni/net.d")
    interval = float(os.environ.get("SYNC_SECONDS", "1"))
    kube = KubeLister()
    last: tuple[Any, ...] | None = None
    while True:
        try:
            setup_node(kube, node_name, cni_dir)
            rules = Compiler(
                node_name,
                kube.list("/api/v1/pods"),
                kube.list("/api/v1/namespaces"),
                kube.list("/apis/networking.k8s.io/v1/networkpolicies"),
            ).compile()
            rules.nat_lines = masquerade_lines(pod_subnet)
            key = (sorted(rules.sets.items()), rules.filter_lines, rules.nat_lines)
            if key != last:
                apply(rules)
                log.info(
                    "applied %d chains, %d rules, %d ipsets",
                    len(rules.chains),
                    len(rules.filter_lines),
                    len(rules.sets),
                )
                last = key
            else:
                ensure_jumps()  # kube-proxy may have put its own jump above ours since
        except Exception:
            log.exception("sync failed; retrying")
            last = None
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
