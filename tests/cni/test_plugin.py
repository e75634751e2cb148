"""The paddock-egress CNI plugin for real: built from cni/, run as the runtime runs it (CNI_*
variables, the conflist entry `paddock cni-install` writes, a prevResult) on a network namespace
made by the test, then attacked from inside it as the harness user would.

Two namespaces: "pod" (the sandbox Pod's, as the primary plugin would leave it) and "net" (the
rest of the world on 198.18.0.2, reached through a veth pair, with a nameserver's port open).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paddock import cni, egress
from paddock.sandbox import HARNESS_UID, VAULT_TRANSPARENT_PORT, VAULT_UID
from paddock_testing.proc import iptables_commands

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POD_IP, NET_IP = "198.18.0.1", "198.18.0.2"
POD_IP6, NET_IP6 = "fd00:198:18::1", "fd00:198:18::2"
AS_HARNESS = ["setpriv", f"--reuid={HARNESS_UID}", f"--regid={HARNESS_UID}", "--clear-groups"]
AS_VAULT = ["setpriv", f"--reuid={VAULT_UID}", f"--regid={VAULT_UID}", "--clear-groups"]


def _run(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30, **kw)


@pytest.fixture(scope="session")
def plugin() -> Path:
    """The plugin binary, built by hack/cni-plugin.sh (once per source change)."""
    if shutil.which("go") is None:
        pytest.fail("Go is missing: run hack/host-deps.sh")
    out = _run(str(REPO / "hack" / "cni-plugin.sh")).stdout.strip()
    return Path(out)


@dataclass
class Netns:
    pod: str
    net: str

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.pod}"

    def in_pod(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.pod, *cmd, check=False)

    def python(self, user: list[str], code: str) -> subprocess.CompletedProcess[str]:
        """Python code in the Pod's namespace as that user (with paddock importable)."""
        env = f"PYTHONPATH={REPO}"
        return self.in_pod("env", "-i", env, *user, sys.executable, "-c", code)


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.fail("the CNI plugin test needs root (network namespaces, iptables)")
    tag = uuid.uuid4().hex[:6]
    ns = Netns(f"pdk-cni-{tag}", f"pdk-cnet-{tag}")
    try:
        for name in (ns.pod, ns.net):
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        pod_dev, net_dev = f"cp-{tag}", f"cn-{tag}"
        _run("ip", "link", "add", pod_dev, "netns", ns.pod, "type", "veth",
             "peer", "name", net_dev, "netns", ns.net)  # fmt: skip
        for name, dev, ip, ip6 in ((ns.pod, pod_dev, POD_IP, POD_IP6),
                                   (ns.net, net_dev, NET_IP, NET_IP6)):  # fmt: skip
            _run("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", name, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
            _run("ip", "-n", name, "link", "set", dev, "up")
        # A Pod has a default route (ptp's): the world is one hop away.
        _run("ip", "-n", ns.pod, "route", "add", "default", "via", NET_IP)
        _run("ip", "-n", ns.pod, "-6", "route", "add", "default", "via", NET_IP6)
        yield ns
    finally:
        for name in (ns.pod, ns.net):
            _run("ip", "netns", "del", name, check=False)


def _conf(annotations: dict[str, str] | None, **entry: Any) -> dict[str, Any]:
    """What the runtime hands the plugin: its conflist entry, runtimeConfig and prevResult."""
    v4, v6 = iptables_commands()
    conf = cni.plugin_entry(iptables=v4, ip6tables=v6) | entry
    conf |= {"cniVersion": "1.0.0", "name": "paddock"}
    conf["prevResult"] = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": f"{POD_IP}/24", "interface": 0}],
    }
    runtime: dict[str, Any] = {"dns": {"servers": [NET_IP]}}
    if annotations is not None:
        runtime["io.kubernetes.cri.pod-annotations"] = annotations
    conf["runtimeConfig"] = runtime
    return conf


def _invoke(
    plugin: Path, netns_path: str, conf: dict[str, Any], command: str = "ADD"
) -> subprocess.CompletedProcess[str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee",
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(plugin.parent),
        "PATH": os.environ["PATH"],
    }
    return _run(str(plugin), input=json.dumps(conf), env=env, check=False)


SANDBOX = {cni.ANNOTATION: cni.annotation_value(), "other": "x"}

CONNECT = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as e:
    print("refused", e)
"""

UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
    print("sent")
except OSError as e:
    print("refused", e)
"""


def _listen_in(ns: str, proto: str, port: int) -> subprocess.Popen[str]:
    """A listener in net that prints one line per connection or datagram it receives."""
    code = (
        "import socket, sys\n"
        f"kind = socket.SOCK_STREAM if '{proto}' == 'tcp' else socket.SOCK_DGRAM\n"
        "s = socket.socket(socket.AF_INET, kind)\n"
        f"s.bind(('{NET_IP}', {port}))\n"
        f"s.listen() if '{proto}' == 'tcp' else None\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        f"    got = s.accept()[1] if '{proto}' == 'tcp' else s.recvfrom(100)[1]\n"
        "    print('got', got, flush=True)\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-u", "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _script(code: str, *args: str) -> str:
    return f"import sys; sys.argv[1:] = {list(args)!r}\n{code}"


def test_sandbox_pod_gets_the_rules_and_the_result_passes_through(
    plugin: Path, netns: Netns
) -> None:
    added = _invoke(plugin, netns.path, _conf(SANDBOX))
    assert added.returncode == 0, added.stdout + added.stderr
    assert json.loads(added.stdout)["ips"][0]["address"] == f"{POD_IP}/24"
    v4, _ = iptables_commands()
    nat = netns.in_pod(v4, "-w", "-t", "nat", "-S", egress.REDIRECT_CHAIN).stdout
    assert f"--to-ports {VAULT_TRANSPARENT_PORT}" in nat
    assert f"-d {NET_IP}/32 -p tcp -m tcp --dport 53 -j RETURN" in nat  # the Pod's nameserver


def test_every_user_but_the_vault_is_redirected_to_the_vault_port(
    plugin: Path, netns: Netns
) -> None:
    assert _invoke(plugin, netns.path, _conf(SANDBOX)).returncode == 0
    # The unprivileged check the init container runs: its connection came back to its listener.
    check = netns.python(AS_HARNESS, "from paddock.egress_check import check; check(port=15006)")
    assert check.returncode == 0, check.stderr
    listener = _listen_in(netns.net, "tcp", 8443)
    try:
        # The vault's own connections leave directly.
        vault = netns.python(AS_VAULT, _script(CONNECT, NET_IP, "8443"))
        assert vault.stdout.startswith("connected"), vault.stdout + vault.stderr
        assert listener.stdout is not None
        assert listener.stdout.readline().startswith("got")
        # Root in the Pod (no vault uid) and the harness do not reach the world: nothing listens
        # on the vault's port in this test, so the redirected connect is refused locally.
        for user in (AS_HARNESS, []):
            out = netns.python(user, _script(CONNECT, NET_IP, "8443")).stdout
            assert out.startswith("refused"), out
            out = netns.python(user, _script(CONNECT, NET_IP6, "8443")).stdout
            assert out.startswith("refused"), out
    finally:
        listener.kill()
    assert "got" not in (listener.communicate()[0] or "")


def test_udp_leaves_only_as_dns_to_the_pods_nameserver(plugin: Path, netns: Netns) -> None:
    assert _invoke(plugin, netns.path, _conf(SANDBOX)).returncode == 0
    dns = _listen_in(netns.net, "udp", 53)
    other = _listen_in(netns.net, "udp", 9999)
    try:
        blocked = netns.python(AS_HARNESS, _script(UDP, NET_IP, "9999")).stdout
        assert blocked.startswith("refused"), blocked
        allowed = netns.python(AS_HARNESS, _script(UDP, NET_IP, "53")).stdout
        assert allowed.startswith("sent"), allowed
        assert dns.stdout is not None
        assert dns.stdout.readline().startswith("got")
    finally:
        for proc in (dns, other):
            proc.kill()
        dns.communicate()
    assert "got" not in (other.communicate()[0] or "")


def test_other_pods_are_left_alone(plugin: Path, netns: Netns) -> None:
    for marks in (None, {"app": "web"}):
        added = _invoke(plugin, netns.path, _conf(marks))
        assert added.returncode == 0, added.stdout
        v4, _ = iptables_commands()
        assert egress.REDIRECT_CHAIN not in netns.in_pod(v4, "-w", "-t", "nat", "-S").stdout
    # And the sandbox's own check would stop such a Pod, had it claimed to be a sandbox.
    check = netns.python(AS_HARNESS, "from paddock.egress_check import check; check(port=15006)")
    assert check.returncode != 0
    assert "did not set up this Pod" in check.stderr


def _error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    msg: str = json.loads(result.stdout)["msg"]
    return msg


def test_a_sandbox_the_plugin_cannot_set_up_is_a_cni_error(plugin: Path, netns: Netns) -> None:
    # iptables that fails, a script from another version, a Pod that expects another script.
    broken = _invoke(plugin, netns.path, _conf(SANDBOX, iptables="/bin/false"))
    assert "the egress script failed" in _error(broken)
    other = _invoke(plugin, netns.path, _conf(SANDBOX, script="true"))
    assert "digest" in _error(other)
    stale = _invoke(plugin, netns.path, _conf({cni.ANNOTATION: "cni/0000000000000000"}))
    assert "different versions" in _error(stale)
    gone = _invoke(plugin, "/var/run/netns/none-such", _conf(SANDBOX))
    assert "none-such" in _error(gone)
    odd = _conf(SANDBOX)
    odd["runtimeConfig"]["dns"]["servers"] = ["8.8.8.8; rm -rf /"]
    assert "not an IP address" in _error(_invoke(plugin, netns.path, odd))


def test_the_rules_outlive_a_second_add_and_del_is_harmless(plugin: Path, netns: Netns) -> None:
    # The runtime may retry ADD; the script is idempotent. DEL leaves the namespace to its end.
    for _ in range(2):
        assert _invoke(plugin, netns.path, _conf(SANDBOX)).returncode == 0
    assert _invoke(plugin, netns.path, _conf(SANDBOX), "DEL").returncode == 0
    v4, _ = iptables_commands()
    rules = netns.in_pod(v4, "-w", "-t", "nat", "-S", "OUTPUT").stdout
    assert rules.count(egress.REDIRECT_CHAIN) == 1
