"""Test and benchmark helpers: real upstream TLS servers (uvicorn), CAs, sample credentials.

Shared by tests/vault_sidecar and bench/vault; nothing here runs in a Pod.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gzip
import ipaddress
import json
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from paddock import pki
from paddock_vault.app import Vault
from paddock_vault.netguard import IPAddress
from paddock_vault.settings import VaultSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Seen:
    """One request as the upstream server received it."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client_port: int

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name lower-case)."""
        return next((v for n, v in self.headers if n == name), None)

    def raw(self) -> bytes:
        """Everything the server saw, as one blob to search for secrets."""
        lines = b"\n".join(n + b": " + v for n, v in self.headers)
        return (
            self.method.encode() + b" " + self.path.encode() + b"?" + self.query + lines + self.body
        )


@dataclass
class Upstream:
    """What the test server received, and the knobs tests turn."""

    seen: list[Seen] = field(default_factory=list)
    sse_sent: list[asyncio.Event] = field(
        default_factory=lambda: [asyncio.Event() for _ in range(3)]
    )
    sse_release: list[asyncio.Event] = field(
        default_factory=lambda: [asyncio.Event() for _ in range(3)]
    )
    git_root: Path | None = None
    git_token: bytes = b""
    port: int = 0
    journal: Path | None = None
    """Where to log each request as a JSON line (for servers in another process)."""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application."""
        path: str = scope["path"]
        if path == "/upload":
            await self._upload(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = Seen(
            scope["method"],
            path,
            scope["query_string"],
            list(scope["headers"]),
            body,
            scope["client"][1],
        )
        self.seen.append(seen)
        if self.journal is not None:
            _note(
                self.journal, "https", authorization=(seen.header(b"authorization") or b"").decode()
            )
        if path == "/sse":
            await self._sse(send)
        elif path.startswith("/repo.git/"):
            await self._git(seen, send)
        elif path == "/gzip":
            await _respond(send, 200, gzip.compress(_echo(seen)), [(b"content-encoding", b"gzip")])
        else:
            auth = seen.header(b"authorization") or b""
            await _respond(send, 200, _echo(seen), [(b"x-echo-authorization", auth)])

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.seen.append(Seen(scope["method"], "/upload", b"", list(scope["headers"]), b"", 0))
        await _respond(send, 200, json.dumps({"received": total}).encode(), [])

    async def _sse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i, (sent, release) in enumerate(zip(self.sse_sent, self.sse_release, strict=True)):
            await send(
                {"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True}
            )
            sent.set()
            async with asyncio.timeout(10):
                await release.wait()
        await send({"type": "http.response.body", "body": b""})

    async def _git(self, seen: Seen, send: Send) -> None:
        auth = seen.header(b"authorization") or b""
        expected = b"Basic " + base64.b64encode(b"x-access-token:" + self.git_token)
        if auth != expected:
            await _respond(send, 401, b"", [(b"www-authenticate", b'Basic realm="git"')])
            return
        root = self.git_root or Path("/nonexistent")
        file = (root / seen.path.removeprefix("/repo.git/")).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            await _respond(send, 404, b"not found", [])
            return
        await _respond(send, 200, file.read_bytes(), [])


def _echo(seen: Seen) -> bytes:
    return json.dumps(
        {
            "path": seen.path,
            "query": seen.query.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in seen.headers],
        }
    ).encode()


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serve(
    upstream: Upstream, cert: Path, key: Path, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Upstream]:
    """Run upstream's app with uvicorn over TLS on host (port 0: a free one)."""
    config = uvicorn.Config(
        upstream.app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_level="error",
        lifespan="off",
        access_log=False,
        interface="asgi3",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn only offers a flag
            await asyncio.sleep(0.01)
    upstream.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.should_exit = True
        await task


GITHUB_STUB = "stub_GITHUB_TOKEN_h2k9d0s7qz"
GITHUB_REAL = "ghp_REALgithubSECRETvalue0001"
OTHER_STUB = "stub_OTHER_KEY_p4c8n1x6wb"
OTHER_REAL = "sk-REALotherSECRETvalue0002"
QUERY_STUB = "stub_QUERY_KEY_m3v7b2j9tt"
QUERY_REAL = "qk-REALquerySECRETvalue0003"
REAL_VALUES = (GITHUB_REAL, OTHER_REAL, QUERY_REAL)
UPSTREAM_NAMES = [
    "api.github.test",
    "raw.githubusercontent.test",
    "git.test",
    "api.other.test",
    "allowed.test",
    "xn--bcher-kva.test",
    "query.test",
    "localhost",
]


def credentials(values: Path) -> list[dict[str, Any]]:
    """Three credentials as the operator writes them, with their values written under values."""
    values.mkdir(parents=True, exist_ok=True)
    for name, value in (
        ("GITHUB_TOKEN", GITHUB_REAL),
        ("OTHER_KEY", OTHER_REAL),
        ("QUERY_KEY", QUERY_REAL),
    ):
        (values / name).write_text(value + "\n")
    return [
        {
            "name": "GITHUB_TOKEN",
            "stub": GITHUB_STUB,
            "valueFile": str(values / "GITHUB_TOKEN"),
            "hosts": ["api.github.test", "*.githubusercontent.test", "git.test", "localhost"],
        },
        {
            "name": "OTHER_KEY",
            "stub": OTHER_STUB,
            "valueFile": str(values / "OTHER_KEY"),
            "hosts": ["api.other.test", "xn--bcher-kva.test"],
            "injection": {"header": "X-Api-Key", "format": "key={value}"},
        },
        {
            "name": "QUERY_KEY",
            "stub": QUERY_STUB,
            "valueFile": str(values / "QUERY_KEY"),
            "hosts": ["query.test"],
            "swapInQuery": True,
        },
    ]


@dataclass(frozen=True)
class Pki:
    """The Agent CA (the vault signs leaves with it) and a stand-in for a public CA upstream."""

    dir: Path
    agent_ca: pki.KeyPair
    public_ca: pki.KeyPair

    @classmethod
    def create(cls, directory: Path) -> Pki:
        """New CAs, their certificates written into directory."""
        made = cls(directory, pki.new_ca("paddock agent CA (test)"), pki.new_ca("public CA (test)"))
        made.agent_ca_file.write_bytes(made.agent_ca.cert_pem)
        made.agent_key_file.write_bytes(made.agent_ca.key_pem)
        made.public_ca_file.write_bytes(made.public_ca.cert_pem)
        return made

    @property
    def agent_ca_file(self) -> Path:
        """The Agent CA certificate (what the harness trusts)."""
        return self.dir / "agent-ca.crt"

    @property
    def agent_key_file(self) -> Path:
        """The Agent CA key (the vault container only)."""
        return self.dir / "agent-ca.key"

    @property
    def public_ca_file(self) -> Path:
        """The CA that signs upstream servers (the vault trusts it as an extra CA)."""
        return self.dir / "public-ca.crt"

    def agent_context(self) -> ssl.SSLContext:
        """A client context trusting only the Agent CA."""
        return ssl.create_default_context(cafile=str(self.agent_ca_file))

    def server_files(self, names: list[str], ca: pki.KeyPair | None = None) -> tuple[Path, Path]:
        """Certificate and key files for a server named names (signed by the public CA)."""
        leaf = pki.issue(ca or self.public_ca, names)
        stem = self.dir / f"server-{len(list(self.dir.glob('server-*.crt')))}"
        cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
        return cert, key

    def write_config(self, directory: Path, egress_allow: list[str] | None = None) -> Path:
        """A VaultConfig file with the sample credentials, as the operator would mount it."""
        config = {
            "credentials": credentials(directory / "values"),
            "egressAllow": ["allowed.test"] if egress_allow is None else egress_allow,
            "caCertFile": str(self.agent_ca_file),
            "caKeyFile": str(self.agent_key_file),
        }
        path = directory / "config.json"
        path.write_text(json.dumps(config))
        return path


@dataclass
class Resolver:
    """DNS for the tests: name -> a sequence of answers (the last one repeats)."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        count = self.asked.get(host, 0)
        self.asked[host] = count + 1
        sequence = self.answers.get(host) or [["127.0.0.1"]]
        return [ipaddress.ip_address(a) for a in sequence[min(count, len(sequence) - 1)]]


@dataclass
class Dials:
    """Every address the vault connected to. Refuses anything off loopback."""

    attempts: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(
        self, host: str, port: int, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.attempts.append((host, port))
        # A safety net for the test machine, not the vault's own check (which the tests assert
        # on): whatever happens, no test sends a packet off this machine.
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"the vault tried to connect to {host}")
        return await asyncio.open_connection(host, port, **kwargs)


def vault_for_tests(
    certs: Pki,
    config_file: Path,
    *,
    ports: list[int],
    resolver: Resolver,
    dialer: Dials,
    **settings: Any,
) -> Vault:
    """A vault on loopback ports of its own choosing that may reach 127.0.0.1 (only) on ports."""
    base: dict[str, Any] = {
        "config_file": config_file,
        "listen_hosts": ["127.0.0.1"],
        "proxy_port": 0,
        "transparent_port": None,
        "admin_host": "127.0.0.1",
        "admin_port": 0,
        "allowed_ports": ports,
        "upstream_ca_files": [certs.public_ca_file],
        "unsafe_allow_cidrs": ["127.0.0.1/32"],
    }
    return Vault(VaultSettings(**(base | settings)), resolver=resolver, dialer=dialer)


@dataclass
class RunningVault:
    """A vault in this process, with what the tests need to reach and inspect it."""

    vault: Vault
    resolver: Resolver
    dials: Dials
    config_file: Path
    certs: Pki

    @property
    def proxy_url(self) -> str:
        host, port = self.vault.address("proxy")
        return f"http://{host}:{port}"

    @property
    def proxy_port(self) -> int:
        return self.vault.address("proxy")[1]

    @property
    def values(self) -> Path:
        return self.config_file.parent / "values"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client that uses the vault as its proxy and trusts the Agent CA."""
        kwargs.setdefault("verify", self.certs.agent_context())
        kwargs.setdefault("timeout", 10)
        return httpx.AsyncClient(proxy=self.proxy_url, **kwargs)

    def write_value(self, name: str, value: str) -> None:
        """Replace a credential's value the way a Secret volume does (atomic rename)."""
        tmp = self.values / f".{name}.new"
        tmp.write_text(value + "\n")
        tmp.replace(self.values / name)


StartVault = Callable[..., Awaitable[RunningVault]]
"""The start_vault fixture: start(ports=[...], resolver=..., **settings)."""


def require(*tools: str) -> None:
    """Fail (not skip) when a host tool the test needs is missing: hack/host-deps.sh installs it."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise AssertionError(f"missing host tools {missing}: run hack/host-deps.sh")


async def tunnel(
    proxy_port: int,
    authority: str,
    *,
    context: ssl.SSLContext | None,
    server_name: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection through the proxy: CONNECT authority, then TLS with server_name (SNI).

    A refused CONNECT raises ConnectionRefusedError with the whole answer (head and body).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(5):
                head += await reader.read()  # the refusal's body: the vault closes after it
        writer.close()
        raise ConnectionRefusedError(head.decode("latin-1"))
    if context is not None:
        name = server_name or authority.rsplit(":", maxsplit=1)[0]
        await writer.start_tls(context, server_hostname=name)
    return reader, writer


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    """Send raw request bytes, read until the peer closes or goes quiet for a second, close."""
    writer.write(request)
    await writer.drain()
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
        while True:
            async with asyncio.timeout(1):
                data = await reader.read(65536)
            if not data:
                break
            received += data
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()
    return received


def _note(journal: Path, kind: str, **data: object) -> None:
    with journal.open("a") as out:
        out.write(json.dumps({"kind": kind, **data}) + "\n")


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, journal: Path, port: int) -> None:
        self.journal, self.port = journal, port

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        _note(self.journal, "udp", port=self.port)


async def internet(cert: Path, key: Path, host: str, journal: Path) -> None:
    """A stand-in for the internet on host: HTTPS on 443, a bare TCP port 8443, UDP 53 and 5353.

    Everything that reaches it is written to journal, one JSON line each; "ready" comes first.
    """

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _note(journal, "tcp", port=8443)
        writer.close()

    loop = asyncio.get_running_loop()
    tcp_server = await asyncio.start_server(tcp, host, 8443)
    for port in (53, 5353):
        await loop.create_datagram_endpoint(
            functools.partial(_Datagrams, journal, port), (host, port)
        )
    async with tcp_server, serve(Upstream(journal=journal), cert, key, host, 443):
        _note(journal, "ready")
        await asyncio.Event().wait()
