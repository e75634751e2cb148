"""The attacker's kit: a server on an allowed host that reflects whatever it is sent, and a client
that sees every byte, chunk boundary and arrival time the vault lets through.

The reflector echoes the request as it arrived (request line, header fields, body), after the
vault swapped stubs for real values, so a real value is always there for the vault to catch. The
query string picks how the echo comes back:

- `framing=chunked|length|close`, `encoding=identity|gzip|gzip-members|deflate|deflate-raw|br|
  gzip-corrupt|<anything>` (the value is sent as Content-Encoding as it is),
- `split=N&pause=MS`: send the echo up to N bytes into the echoed body, wait MS, send the rest,
- `escape=percent|json`: every byte of the echo percent- or \\u-escaped,
- `names=1`: each header value that is a token comes back as a response header *name*,
- `status=206`: a 206 whether or not Range was asked for; a Range header is honoured anyway.

`script(path, ...)` makes the server answer path with given chunks instead (for the property test).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import ssl
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from paddock_testing.vault import GITHUB_STUB, UPSTREAM_NAMES, Pki, RunningVault, StartVault, tunnel

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@dataclass
class Script:
    """A scripted answer: header fields, body pieces with a pause (seconds) before each."""

    headers: list[tuple[bytes, bytes]]
    pieces: list[tuple[float, bytes]]
    framing: str = "chunked"
    status: int = 200


@dataclass
class Reflector:
    """A TLS (or plain) server that reflects requests; `seen` holds each request as received."""

    context: ssl.SSLContext | None
    port: int = 0
    seen: list[bytes] = field(default_factory=list)
    scripts: dict[str, Script] = field(default_factory=dict)

    def script(self, path: str, script: Script) -> None:
        """Answer requests for path with script (the request is still recorded)."""
        self.scripts[path] = script

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await _read_body(reader, head)
                self.seen.append(head + body)
                if not await self._answer(writer, head, body):
                    break
        writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> bool:
        target = head.split(b" ", 2)[1]
        path, _, query = target.partition(b"?")
        if path.decode() in self.scripts:
            return await _play(writer, self.scripts[path.decode()])
        opts = {k: v[-1] for k, v in urllib.parse.parse_qs(query.decode("latin-1")).items()}
        echo = head + body
        escape = opts.get("escape")
        if escape == "percent":
            echo = b"".join(b"%%%02X" % b for b in echo)
        elif escape == "json":
            echo = b"".join(b"\\u%04x" % b for b in echo)
        status, fields = int(opts.get("status", "200")), [(b"Content-Type", b"text/plain")]
        wanted = _range(head, len(echo))
        if wanted is not None:
            echo, status = echo[wanted[0] : wanted[1] + 1], 206
            fields.append((b"Content-Range", b"bytes %d-%d/*" % wanted))
        if opts.get("names"):
            for line in head.split(b"\r\n")[1:]:
                value = line.partition(b":")[2].strip()
                if _TOKEN.match(value):
                    fields.append((b"X-Seen-" + value, b"1"))
        split = len(head) + int(opts["split"]) if "split" in opts else len(echo)
        pieces = [(0.0, echo[:split]), (int(opts.get("pause", "0")) / 1000, echo[split:])]
        encoding = opts.get("encoding", "identity")
        if encoding != "identity":
            pieces = _encode(encoding, pieces)
            fields.append((b"Content-Encoding", _CODING_NAMES.get(encoding, encoding).encode()))
        script = Script(fields, pieces, opts.get("framing", "length"), status)
        return await _play(writer, script)


_CODING_NAMES = {"gzip-members": "gzip", "gzip-corrupt": "gzip", "deflate-raw": "deflate"}


def _range(head: bytes, size: int) -> tuple[int, int] | None:
    found = re.search(rb"(?im)^range:\s*bytes=(\d+)-(\d+)\r?$", head)
    if found is None:
        return None
    return int(found.group(1)), min(int(found.group(2)), size - 1)


def _encode(encoding: str, pieces: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The pieces encoded as one stream (each piece flushed), keeping the pauses."""
    if encoding == "gzip-members":
        return [(pause, gzip.compress(data)) for pause, data in pieces]
    if encoding == "gzip-corrupt":
        first = gzip.compress(b"".join(d for _, d in pieces))
        return [(0.0, first[:20]), (pieces[-1][0], b"\x00garbage" * 8)]
    if encoding == "br":
        return [(0.0, b"\x0b\x02\x80hello\x03")]
    wbits = {"gzip": 31, "deflate": 15, "deflate-raw": -15}.get(encoding)
    if wbits is None:  # an encoding nobody can decode: the point is its name
        return pieces
    compressor = zlib.compressobj(wbits=wbits)
    out = [
        (pause, compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))
        for pause, data in pieces
    ]
    return [*out[:-1], (out[-1][0], out[-1][1] + compressor.flush())]


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return body[:-2]
            body = body[:-2]
    found = re.search(rb"content-length:\s*(\d+)", lowered)
    return await reader.readexactly(int(found.group(1))) if found else b""


async def _play(writer: asyncio.StreamWriter, script: Script) -> bool:
    body_size = sum(len(d) for _, d in script.pieces)
    fields = list(script.headers)
    if script.framing == "chunked":
        fields.append((b"Transfer-Encoding", b"chunked"))
    elif script.framing == "length":
        fields.append((b"Content-Length", b"%d" % body_size))
    else:
        fields.append((b"Connection", b"close"))
    writer.write(
        b"HTTP/1.1 %d X\r\n" % script.status
        + b"".join(n + b": " + v + b"\r\n" for n, v in fields)
        + b"\r\n"
    )
    for pause, data in script.pieces:
        if pause:
            await writer.drain()
            await asyncio.sleep(pause)  # the server's own pacing, which is the attack
        if data:
            writer.write(
                b"%x\r\n%s\r\n" % (len(data), data) if script.framing == "chunked" else data
            )
    if script.framing == "chunked":
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    return script.framing != "close"


@dataclass
class Seen:
    """A response as the agent received it: head, decoded body, and when each body byte arrived."""

    status: int
    head: bytes
    body: bytes
    chunks: list[int]
    """The sizes of the HTTP chunks the body came in (chunked framing)."""
    arrival: list[float]
    """For each body byte, seconds from the request to the read that brought it."""
    complete: bool
    """Whether the body ended as its framing says (not cut by a reset or an early close)."""

    def visible_after(self, piece: bytes) -> float:
        """Seconds until the whole of piece was in the agent's hands."""
        at = self.body.find(piece)
        assert at >= 0, f"{piece!r} never arrived"
        return self.arrival[at + len(piece) - 1]


class Attacker:
    """The agent side: raw HTTP/1.1 over TLS through the vault's CONNECT, watched byte by byte."""

    def __init__(self, vault: RunningVault, port: int, host: str = "api.github.test") -> None:
        self.vault, self.port, self.host = vault, port, host

    async def send(
        self, target: str, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Seen:
        """One request on a fresh connection; the response as the agent saw it."""
        reader, writer = await tunnel(
            self.vault.proxy_port,
            f"{self.host}:{self.port}",
            context=self.vault.certs.agent_context(),
        )
        fields = {"Host": self.host, "Content-Length": str(len(body)), **(headers or {})}
        request = (
            f"GET {target} HTTP/1.1\r\n".encode()
            + b"".join(f"{n}: {v}\r\n".encode() for n, v in fields.items())
            + b"\r\n"
            + body
        )
        started = time.monotonic()
        writer.write(request)
        try:
            return await _receive(reader, started)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


async def _receive(reader: asyncio.StreamReader, started: float) -> Seen:
    raw, times = b"", []
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(10):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                raw += data
                times += [time.monotonic() - started] * len(data)
                parsed = _parse(raw, times, eof=False)
                if parsed is not None and parsed.complete:
                    return parsed
    parsed = _parse(raw, times, eof=True)
    assert parsed is not None, f"no response head: {raw[:200]!r}"
    return parsed


def _parse(raw: bytes, times: list[float], *, eof: bool) -> Seen | None:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    head, rest, offset = raw[: end + 4], raw[end + 4 :], end + 4
    status = int(head.split(b" ", 2)[1])
    lowered = head.lower()
    body, arrival, chunks = b"", [], []
    if b"transfer-encoding: chunked" in lowered:
        pos = 0
        while True:
            line_end = rest.find(b"\r\n", pos)
            if line_end < 0:
                return Seen(status, head, body, chunks, arrival, False)
            size = int(rest[pos:line_end], 16)
            start = line_end + 2
            if len(rest) < start + size + 2:
                return Seen(status, head, body, chunks, arrival, False)
            if size == 0:
                return Seen(status, head, body, chunks, arrival, True)
            body += rest[start : start + size]
            arrival += times[offset + start : offset + start + size]
            chunks.append(size)
            pos = start + size + 2
    found = re.search(rb"content-length:\s*(\d+)", lowered)
    if found:
        size = int(found.group(1))
        return Seen(status, head, rest[:size], [], times[offset : offset + size], len(rest) >= size)
    return Seen(status, head, rest, [], times[offset:], eof)


@pytest_asyncio.fixture
async def reflector(certs: Pki) -> AsyncIterator[Reflector]:
    """The reflecting server over TLS on 127.0.0.1, with a certificate for every test name."""
    cert, key = certs.server_files(UPSTREAM_NAMES)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Reflector(context)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


@pytest_asyncio.fixture
async def attacker(start_vault: StartVault, reflector: Reflector) -> Attacker:
    """The agent, behind a fresh vault whose credential hosts all resolve to the reflector."""
    return Attacker(await start_vault(ports=[reflector.port]), reflector.port)


@pytest.fixture
def stub_header() -> dict[str, Any]:
    """The header that makes the vault put GITHUB_TOKEN's real value into the request."""
    return {"Authorization": f"Bearer {GITHUB_STUB}"}


@dataclass(frozen=True)
class Kit:
    """The classes above, for tests that build their own servers (tests cannot import conftest)."""

    Reflector: type[Reflector] = Reflector
    Script: type[Script] = Script
    Attacker: type[Attacker] = Attacker

    @staticmethod
    def encoded(
        encoding: str, pieces: list[tuple[float, bytes]]
    ) -> tuple[list[tuple[bytes, bytes]], list[tuple[float, bytes]]]:
        """(header fields, pieces) for a body sent with encoding (identity: as it is)."""
        if encoding == "identity":
            return [], pieces
        name = _CODING_NAMES.get(encoding, encoding).encode()
        return [(b"Content-Encoding", name)], _encode(encoding, pieces)


@pytest.fixture(scope="session")
def kit() -> Kit:
    """The attacker's kit as classes."""
    return Kit()
