"""Transparent mode for real: a network namespace set up with paddock.egress's own script.

Two namespaces made by the test: "pod" (the sandbox Pod: the vault as uid 1337, clients as the
harness uid, the egress script applied with iptables) and "net" (a stand-in for the internet on
198.18.0.2, the benchmarking range, reachable only through a veth pair inside this test). Clients
ignore any proxy setting; iptables alone must force them through the vault.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from paddock import egress
from paddock.sandbox import HARNESS_UID, VAULT_ADMIN_PORT, VAULT_UID
from paddock_testing.proc import iptables_commands
from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB, REAL_VALUES, Pki, require
from paddock_testing.wait import wait_for

pytestmark = pytest.mark.integration

POD_IP, NET_IP = "198.18.0.1", "198.18.0.2"
POD_IP6, NET_IP6 = "fd00:198:18::1", "fd00:198:18::2"
# The vault runs as its own uid; it may read the test's files (under root's home) but its
# network identity, which iptables matches, is uid 1337.
AS_VAULT = ["setpriv", f"--reuid={VAULT_UID}", f"--regid={VAULT_UID}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip
AS_HARNESS = ["setpriv", f"--reuid={HARNESS_UID}", f"--regid={HARNESS_UID}", "--clear-groups"]


def _run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Sandbox:
    pod: str
    net: str
    journal: Path
    public: Path
    agent_ca: Path
    vault_log: Path

    def in_pod(
        self, *cmd: str, check: bool = False, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.pod, *cmd, check=check, timeout=timeout)

    def harness(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        """cmd as the harness user in the Pod, with proxy variables that point nowhere useful."""
        return self.in_pod("env", "-i", "PATH=/usr/bin:/bin", *AS_HARNESS, *cmd)

    def seen(self, kind: str | None = None) -> list[dict[str, object]]:
        entries = [json.loads(line) for line in self.journal.read_text().splitlines()]
        return [e for e in entries if kind is None or e["kind"] == kind]


def _namespaces(tag: str, pod: str, net: str) -> None:
    for ns in (pod, net):
        _run("ip", "netns", "add", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
    pod_dev, net_dev = f"vp-{tag}", f"vn-{tag}"
    _run("ip", "link", "add", pod_dev, "netns", pod, "type", "veth",
         "peer", "name", net_dev, "netns", net)  # fmt: skip
    for ns, dev, ip, ip6 in ((pod, pod_dev, POD_IP, POD_IP6), (net, net_dev, NET_IP, NET_IP6)):
        _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        _run("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
        _run("ip", "-n", ns, "link", "set", dev, "up")


INTERNET = (
    "import asyncio, sys; from pathlib import Path; from paddock_testing.vault import internet; "
    "asyncio.run(internet(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])))"
)


def _start(
    pod: str, net: str, work: Path, journal: Path, processes: list[subprocess.Popen[bytes]]
) -> Path:
    """The internet in net, the vault (uid 1337) in pod; returns the vault's log file."""
    certs = Pki.create(work)
    cert, key = certs.server_files(["api.github.test", "allowed.test"])
    internet = [sys.executable, "-c", INTERNET, str(cert), str(key), NET_IP, str(journal)]
    processes.append(subprocess.Popen(["ip", "netns", "exec", net, *internet]))
    env = os.environ | {
        "PADDOCK_VAULT_CONFIG_FILE": str(certs.write_config(work)),
        "PADDOCK_VAULT_UPSTREAM_CA_FILES": json.dumps([str(certs.public_ca_file)]),
        "PADDOCK_VAULT_UNSAFE_ALLOW_CIDRS": f'["{NET_IP}/32"]',
    }
    vault = ["ip", "netns", "exec", pod, *AS_VAULT, sys.executable, "-m", "paddock.cli", "vault"]
    log_file = work / "vault.log"
    with log_file.open("wb") as log:
        processes.append(subprocess.Popen(vault, env=env, stderr=log))

    def started() -> bool:
        assert all(p.poll() is None for p in processes), log_file.read_text()
        return "vault listening" in log_file.read_text() and '"ready"' in journal.read_text()

    wait_for(
        started, "the vault and the internet to start", 20, every=0.1, detail=log_file.read_text
    )
    return log_file


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The two namespaces, the egress rules applied in pod, the vault and the internet running."""
    if os.geteuid() != 0:
        pytest.fail("the transparent-mode test needs root (network namespaces, iptables)")
    require("ip", "setpriv", "curl", "bash")
    v4, v6 = iptables_commands()
    tag = uuid.uuid4().hex[:6]
    pod, net = f"pdk-pod-{tag}", f"pdk-net-{tag}"
    work = tmp_path_factory.mktemp("netns")
    # What the harness user reads lives in a world-readable folder (pytest's is root's only).
    public = Path(tempfile.mkdtemp(prefix="paddock-netns-"))
    public.chmod(0o755)
    journal = work / "journal.jsonl"
    journal.touch()
    etc = Path("/etc/netns") / pod  # `ip netns exec` mounts these over /etc/hosts, resolv.conf
    processes: list[subprocess.Popen[bytes]] = []
    try:
        _namespaces(tag, pod, net)
        etc.mkdir(parents=True)
        (etc / "hosts").write_text(
            f"127.0.0.1 localhost\n{NET_IP} api.github.test allowed.test blocked.test\n"
        )
        (etc / "resolv.conf").write_text(f"nameserver {NET_IP}\n")
        script = egress.iptables_script()
        env = ["env", f"IPTABLES={v4}", f"IP6TABLES={v6}"]
        applied = _run("ip", "netns", "exec", pod, *env, "sh", "-c", script)
        assert "redirected to port 15006" in applied.stdout
        log = _start(pod, net, work, journal, processes)
        for name in ("agent-ca.crt", "public-ca.crt"):
            shutil.copy(work / name, public / name)
            (public / name).chmod(0o644)
        yield Sandbox(pod, net, journal, public, public / "agent-ca.crt", log)
    finally:
        for proc in processes:
            proc.terminate()
            proc.wait(timeout=10)
        for ns in (pod, net):
            _run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(public, ignore_errors=True)


def test_client_ignoring_proxy_is_forced_through_the_vault(sandbox: Sandbox) -> None:
    before = len(sandbox.seen("https"))
    reply = sandbox.harness(
        "curl", "-sS", "--noproxy", "*", "--max-time", "10", "--cacert", str(sandbox.agent_ca),
        "-H", f"Authorization: Bearer {GITHUB_STUB}", "https://api.github.test/user",
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    # Only the vault can have swapped the stub: curl spoke TLS with a leaf of the Agent CA.
    [seen] = sandbox.seen("https")[before:]
    assert seen["authorization"] == f"Bearer {GITHUB_REAL}"
    assert GITHUB_REAL not in reply.stdout
    assert '"mode": "transparent"' in sandbox.vault_log.read_text()


def test_ipv6_is_forced_through_the_vault_too(sandbox: Sandbox) -> None:
    before = len(sandbox.seen("https"))
    # The name points at the internet's IPv6 address, where nothing listens on 443: only the
    # vault, reached through the ip6tables redirect, can answer (it connects over IPv4).
    reply = sandbox.harness(
        "curl", "-sS", "-6", "--max-time", "10", "--cacert", str(sandbox.agent_ca),
        "--resolve", f"api.github.test:443:[{NET_IP6}]",
        "-H", f"Authorization: Bearer {GITHUB_STUB}", "https://api.github.test/v6",
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    [seen] = sandbox.seen("https")[before:]
    assert seen["authorization"] == f"Bearer {GITHUB_REAL}"


def test_stub_to_wrong_host_blocked_in_transparent_mode(sandbox: Sandbox) -> None:
    reply = sandbox.harness(
        "curl", "-sS", "--max-time", "10", "-H", f"X-Token: {GITHUB_STUB}",
        "http://allowed.test/steal",
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    assert "may not be sent over a connection the vault cannot verify" in reply.stdout


def test_allowed_host_tunnelled(sandbox: Sandbox) -> None:
    reply = sandbox.harness(
        "curl", "-sS", "--max-time", "10", "--cacert", str(sandbox.public / "public-ca.crt"),
        "https://allowed.test/",
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr


def test_no_direct_egress(sandbox: Sandbox) -> None:
    tcp_before = len(sandbox.seen("tcp"))
    https_before = len(sandbox.seen("https"))
    # Another port, and 443 by address (no name, so no SNI): both end at the vault, refused.
    other_port = sandbox.harness("curl", "-sS", "--max-time", "5", f"http://{NET_IP}:8443/")
    by_address = sandbox.harness(
        "curl", "-sS", "--max-time", "5", "--cacert", str(sandbox.agent_ca), f"https://{NET_IP}/"
    )  # fmt: skip
    assert other_port.returncode != 0
    assert by_address.stdout == "paddock vault: TLS without a server name (SNI)\n"
    # UDP anywhere but the nameserver is rejected by the filter chain.
    udp = sandbox.harness("bash", "-c", f"echo hi > /dev/udp/{NET_IP}/5353")
    dns = sandbox.harness("bash", "-c", f"echo hi > /dev/udp/{NET_IP}/53")
    assert dns.returncode == 0, dns.stderr

    def udp_ports() -> list[object] | None:
        ports = [e["port"] for e in sandbox.seen("udp")]
        return ports if 53 in ports else None

    # Once the nameserver's datagram (sent last) is in, anything let through before it is too.
    ports = wait_for(udp_ports, "the datagram to port 53 to arrive")
    assert len(sandbox.seen("tcp")) == tcp_before
    assert len(sandbox.seen("https")) == https_before
    assert ports == [53]
    assert udp.returncode != 0, "UDP to a non-nameserver was not rejected"
    log = sandbox.vault_log.read_text()
    assert "port 8443 is not allowed" in log
    assert "TLS without a server name" in log


def test_refused_tls_reads_as_403(sandbox: Sandbox) -> None:
    # A name the Agent does not allow: the vault completes TLS with a leaf of the Agent CA
    # (which the harness trusts) to say why, instead of a reset curl reports as SSL_ERROR_SYSCALL.
    reply = sandbox.harness(
        "curl", "-sS", "--max-time", "10", "--cacert", str(sandbox.agent_ca),
        "-w", "%{http_code}", "https://blocked.test/",
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout == "paddock vault: blocked.test is not an allowed destination\n403"
    assert "blocked.test" not in json.dumps(sandbox.seen())


def test_admin_port_closed_to_the_harness(sandbox: Sandbox) -> None:
    url = f"http://127.0.0.1:{VAULT_ADMIN_PORT}/healthz"
    harness = sandbox.harness("curl", "-sS", "--max-time", "5", url)
    vault = sandbox.in_pod(*AS_VAULT, "curl", "-sS", "--max-time", "5", url)
    assert harness.returncode != 0
    assert vault.returncode == 0, vault.stderr
    assert vault.stdout == "ok\n"


def test_rules_cover_ipv6(sandbox: Sandbox) -> None:
    v6 = sandbox.in_pod(iptables_commands()[1] + "-save", check=True).stdout
    assert re.search(r"-A PADDOCK_REDIRECT -p tcp -j REDIRECT --to-ports 15006", v6)


def test_no_real_value_in_the_vault_log(sandbox: Sandbox) -> None:
    log = sandbox.vault_log.read_text()
    assert not any(real in log for real in REAL_VALUES)
