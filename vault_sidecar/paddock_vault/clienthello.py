"""Read a TLS ClientHello without consuming it, to learn the server name (SNI) it asks for.

The vault decides what to do with a TLS connection (terminate it, tunnel it, refuse it) before the
handshake, so it parses the first handshake message itself; the bytes are then replayed to the TLS
layer or to the upstream server unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from paddock_vault.errors import RequestError

HANDSHAKE = 0x16
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_MAX_HELLO = 1 << 16


@dataclass(frozen=True)
class ClientHello:
    """What the vault needs from a ClientHello."""

    server_name: str | None
    alpn: tuple[str, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RequestError("truncated TLS ClientHello")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> _Reader:
        return _Reader(self.take(self.uint(length_bytes)))

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _handshake_message(records: bytes) -> bytes | None:
    """The first handshake message from TLS records, or None while more bytes are needed."""
    payload, pos = b"", 0
    while pos + 5 <= len(records):
        kind, _version, length = struct.unpack_from("!BHH", records, pos)
        if kind != HANDSHAKE or length == 0 or length > 1 << 14:
            raise RequestError("not a TLS handshake record")
        if pos + 5 + length > len(records):
            return None
        payload += records[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(payload) >= 4:
            size = int.from_bytes(payload[1:4], "big")
            if payload[0] != _CLIENT_HELLO or size > _MAX_HELLO:
                raise RequestError("the first TLS message is not a ClientHello")
            if len(payload) >= 4 + size:
                return payload[4 : 4 + size]
    return None


def _parse_extensions(body: _Reader) -> ClientHello:
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    while not body.done():
        kind, data = body.uint(2), body.vector(2)
        if kind == _SERVER_NAME:
            names = data.vector(2)
            while not names.done():
                name_type, name = names.uint(1), names.vector(2).data
                if name_type == 0:
                    if server_name is not None:
                        raise RequestError("more than one server name in the ClientHello")
                    try:
                        server_name = name.decode("ascii")
                    except UnicodeDecodeError:
                        raise RequestError("server name is not ASCII") from None
        elif kind == 16:  # application_layer_protocol_negotiation
            protocols = data.vector(2)
            names_seen: list[str] = []
            while not protocols.done():
                names_seen.append(protocols.vector(1).data.decode("latin-1"))
            alpn = tuple(names_seen)
    return ClientHello(server_name, alpn)


def parse(records: bytes) -> ClientHello | None:
    """The ClientHello in records, None while incomplete; RequestError when it is not one."""
    message = _handshake_message(records)
    if message is None:
        return None
    body = _Reader(message)
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # session id
    body.vector(2)  # cipher suites
    body.vector(1)  # compression methods
    if body.done():
        return ClientHello(None, ())
    return _parse_extensions(body.vector(2))


async def read(recv: Callable[[], Awaitable[bytes]], first: bytes) -> tuple[ClientHello, bytes]:
    """Read until a whole ClientHello is buffered; returns it with every byte read so far."""
    buffer = first
    while True:
        hello = parse(buffer)
        if hello is not None:
            return hello, buffer
        if len(buffer) > _MAX_HELLO + 1024:
            raise RequestError("TLS ClientHello too large")
        more = await recv()
        if not more:
            raise RequestError("connection closed during the TLS ClientHello")
        buffer += more
