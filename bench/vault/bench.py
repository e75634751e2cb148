"""Vault sidecar benchmark: direct HTTPS, through paddock's vault, through mitmdump, in one run.

Same upstream (nginx over TLS on loopback, port 443), same load generator (hey, keep-alive,
HTTPS through an HTTP CONNECT proxy), same header rewrite (the stub in Authorization becomes the
real value; nginx answers 200 only when it got the real value). Prints p50/p99 latency at 1
connection, requests/s at 1 and 10 connections, and SSE time to first event, with ratios.

Tools, cached under ~/.cache/paddock (built or installed on first use):
  nginx-light (Debian), hey (Go module github.com/rakyll/hey), mitmproxy 11.0.2 (PyPI, own venv).

    .venv/bin/python bench/vault/bench.py [--seconds 3] [--rounds 3] [--baseline REF]

--baseline REF adds a column for the vault as it was at a git ref (exported with git archive and
run from there), so a change to the vault is compared with what it replaced in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB, Pki
from paddock_testing.wait import wait_for

CACHE = Path.home() / ".cache" / "paddock"
HEY = CACHE / "go-bin" / "hey"
MITM_VENV = CACHE / "mitm-11.0.2"
HOST = "localhost"
SETUPS = ("direct", "paddock vault", "mitmdump")
BASELINE = "vault @ baseline"
REPO = Path(__file__).resolve().parents[2]

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    listen [::1]:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      default_type text/plain;
      if ($http_authorization != "Bearer {real}") {{ return 403 "not swapped\\n"; }}
      return 200 "ok\\n";
    }}
    location /sse {{
      default_type text/event-stream;
      return 200 "data: 1\\n\\n";
    }}
  }}
}}
"""

MITM_ADDON = f"""
from mitmproxy import http

def request(flow: http.HTTPFlow) -> None:
    value = flow.request.headers.get("authorization")
    if flow.request.pretty_host == "{HOST}" and value and "{GITHUB_STUB}" in value:
        flow.request.headers["authorization"] = value.replace("{GITHUB_STUB}", "{GITHUB_REAL}")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tools() -> None:
    if shutil.which("nginx") is None:
        sys.exit("nginx is missing: apt-get install nginx-light")
    if not HEY.exists():
        env = os.environ | {"GOBIN": str(HEY.parent)}
        subprocess.run(["go", "install", "github.com/rakyll/hey@v0.1.4"], env=env, check=True)
    if not (MITM_VENV / "bin" / "mitmdump").exists():
        subprocess.run([sys.executable, "-m", "venv", str(MITM_VENV)], check=True)
        pip = [str(MITM_VENV / "bin" / "pip"), "install", "-q", "mitmproxy==11.0.2"]
        subprocess.run(pip, check=True)


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, f"{what} to listen on {port}", every=0.1, error=SystemExit)


@contextmanager
def _running(cmd: list[str], port: int, what: str, **kwargs: object) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    try:
        _wait_port(port, proc, what)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _hey(url: str, proxy: str | None, connections: int, seconds: float) -> float:
    """Requests/s with keep-alive (hey's latency figures only have 0.1 ms resolution)."""
    cmd = [str(HEY), "-z", f"{seconds}s", "-c", str(connections)]
    cmd += ["-H", f"Authorization: Bearer {GITHUB_STUB if proxy else GITHUB_REAL}"]
    if proxy:
        cmd += ["-x", proxy]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    statuses = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if set(statuses) != {"200"} or rps is None:
        sys.exit(f"unexpected answer from {url} via {proxy}:\n{out}")
    return float(rps[1])


def _latency(port: int, proxy_port: int | None, path: str, count: int) -> tuple[float, float]:
    """(p50, p99) ms from sending a GET to reading its whole answer, one keep-alive connection."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", proxy_port or port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if proxy_port:
        raw.sendall(f"CONNECT {HOST}:{port} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        if not raw.recv(4096).startswith(b"HTTP/1.1 200"):
            sys.exit("CONNECT refused")
    token = GITHUB_STUB if proxy_port else GITHUB_REAL
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    end = b"data: 1\n\n" if path == "/sse" else b"ok\n"
    samples = []
    with context.wrap_socket(raw, server_hostname=HOST) as tls:
        for _ in range(count):
            started = time.perf_counter()
            tls.sendall(request)
            received = b""
            while not received.endswith(end):
                received += tls.recv(65536)
            samples.append((time.perf_counter() - started) * 1e3)
            if not received.startswith(b"HTTP/1.1 200"):
                sys.exit(f"unexpected answer: {received!r}")
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def _vault_cmd(
    work: Path, certs: Pki, port: int, proxy_port: int, source: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """The vault's command and environment (source: a tree to run it from instead of this one)."""
    env = os.environ | {
        "PADDOCK_VAULT_CONFIG_FILE": str(certs.write_config(work)),
        "PADDOCK_VAULT_LISTEN_HOSTS": '["127.0.0.1"]',
        "PADDOCK_VAULT_PROXY_PORT": str(proxy_port),
        "PADDOCK_VAULT_TRANSPARENT_PORT": str(_free_port()),
        "PADDOCK_VAULT_ADMIN_HOST": "127.0.0.1",
        "PADDOCK_VAULT_ADMIN_PORT": str(_free_port()),
        "PADDOCK_VAULT_ALLOWED_PORTS": f"[{port}]",
        "PADDOCK_VAULT_UPSTREAM_CA_FILES": json.dumps([str(certs.public_ca_file)]),
        "PADDOCK_VAULT_UNSAFE_ALLOW_CIDRS": '["127.0.0.1/32", "::1/128"]',
        "PADDOCK_VAULT_LOG_LEVEL": "WARNING",
    }
    if source is not None:
        parts = ("vault_sidecar", "operator", "gateway", "runner")
        folders = [source, *(source / f for f in parts)]
        env["PYTHONPATH"] = os.pathsep.join(map(str, folders))
    return [sys.executable, "-m", "paddock.cli", "vault"], env


def _export(ref: str, into: Path) -> Path:
    """The tree of a git ref, as files under into."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _mitm_cmd(work: Path, certs: Pki, proxy_port: int) -> list[str]:
    confdir = work / "mitm"
    confdir.mkdir()
    (confdir / "mitmproxy-ca.pem").write_bytes(certs.agent_ca.key_pem + certs.agent_ca.cert_pem)
    addon = work / "rewrite.py"
    addon.write_text(MITM_ADDON)
    return [
        str(MITM_VENV / "bin" / "mitmdump"), "-q", "--listen-host", "127.0.0.1",
        "--listen-port", str(proxy_port), "--set", f"confdir={confdir}",
        "--set", f"ssl_verify_upstream_trusted_ca={certs.public_ca_file}", "-s", str(addon),
    ]  # fmt: skip


def _measure(port: int, proxy: int | None, seconds: float) -> dict[str, float]:
    url = f"https://{HOST}/"
    proxy_url = f"http://127.0.0.1:{proxy}" if proxy else None
    p50, p99 = _latency(port, proxy, "/", 2000)
    sse_p50, sse_p99 = _latency(port, proxy, "/sse", 500)
    return {
        "p50_ms": p50, "p99_ms": p99, "sse_p50_ms": sse_p50, "sse_p99_ms": sse_p99,
        "rps_1": _hey(url, proxy_url, 1, seconds), "rps_10": _hey(url, proxy_url, 10, seconds),
    }  # fmt: skip


def _median(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def _table(results: dict[str, dict[str, float]]) -> str:
    direct, vault, mitm = results["direct"], results["paddock vault"], results["mitmdump"]
    base = results.get(BASELINE)
    rows = [
        ("p50 latency, 1 conn (ms)", "p50_ms", "{:.3f}"),
        ("p99 latency, 1 conn (ms)", "p99_ms", "{:.3f}"),
        ("requests/s, 1 conn", "rps_1", "{:.0f}"),
        ("requests/s, 10 conns", "rps_10", "{:.0f}"),
        ("SSE first event p50 (ms)", "sse_p50_ms", "{:.3f}"),
        ("SSE first event p99 (ms)", "sse_p99_ms", "{:.3f}"),
    ]
    header = f"{'':28}{'direct':>12}{'paddock vault':>15}{'mitmdump':>12}{'vault/mitm':>12}"
    lines = [header + (f"{BASELINE:>18}{'vault/base':>12}" if base else "")]
    for label, key, fmt in rows:
        cells = [fmt.format(r[key]) for r in (direct, vault, mitm)]
        ratio = vault[key] / mitm[key] if mitm[key] else float("nan")
        line = f"{label:28}{cells[0]:>12}{cells[1]:>15}{cells[2]:>12}{ratio:>11.2f}x"
        if base:
            line += f"{fmt.format(base[key]):>18}{vault[key] / base[key]:>11.2f}x"
        lines.append(line)
    added = vault["p50_ms"] - direct["p50_ms"]
    lines.append("")
    lines.append(f"added p50 over direct: vault {added:.3f} ms, mitmdump "
                 f"{mitm['p50_ms'] - direct['p50_ms']:.3f} ms (goal: vault <= 0.5 ms)")  # fmt: skip
    lines.append(f"requests/s at 10 connections, vault / mitmdump: "
                 f"{vault['rps_10'] / mitm['rps_10']:.1f}x (goal: >= 5x)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    """Run the three set-ups one after the other against the same nginx, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per hey run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--baseline", metavar="REF", help="also run the vault of this git ref")
    args = parser.parse_args()
    _tools()
    with tempfile.TemporaryDirectory(prefix="paddock-bench-") as tmp:
        work = Path(tmp)
        certs = Pki.create(work)
        cert, key = certs.server_files([HOST])
        # hey puts the URL's port into the TLS server name, which the vault refuses as invalid:
        # the upstream listens on 443, so URLs carry no port.
        port = 443
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(dir=work, port=port, cert=cert, key=key, real=GITHUB_REAL)
        )
        nginx = ["nginx", "-c", str(conf), "-e", str(work / "error.log")]
        vault_port, mitm_port, base_port = _free_port(), _free_port(), _free_port()
        setups = dict(zip(SETUPS, (None, vault_port, mitm_port), strict=True))
        cmd, env = _vault_cmd(work, certs, port, vault_port)
        with contextlib.ExitStack() as running:
            running.enter_context(_running(nginx, port, "nginx"))
            running.enter_context(
                _running(cmd, vault_port, "paddock vault", env=env, stderr=subprocess.DEVNULL)
            )
            mitm = _mitm_cmd(work, certs, mitm_port)
            running.enter_context(_running(mitm, mitm_port, "mitmdump"))
            if args.baseline:
                source = _export(args.baseline, work / "baseline")
                cmd, env = _vault_cmd(work, certs, port, base_port, source)
                running.enter_context(
                    _running(cmd, base_port, BASELINE, env=env, stderr=subprocess.DEVNULL)
                )
                setups[BASELINE] = base_port
            samples: dict[str, list[dict[str, float]]] = {n: [] for n in setups}
            # Rounds interleave the set-ups, so that noise from other work on the machine falls
            # on all of them; each cell is the median over the rounds.
            for _ in range(args.rounds):
                for name, proxy in setups.items():
                    samples[name].append(_measure(port, proxy, args.seconds))
        results = {name: _median(s) for name, s in samples.items()}
    print(
        f"cores: {os.cpu_count()}, upstream nginx (TLS), medians of {args.rounds} interleaved "
        f"rounds, hey {args.seconds:g} s per cell"
        + (f", baseline: the vault at {args.baseline}" if args.baseline else "")
    )
    print(_table(results))


if __name__ == "__main__":
    main()
