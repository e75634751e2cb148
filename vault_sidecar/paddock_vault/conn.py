"""Byte streams the proxy reads and writes: plain TCP, and TLS it terminates itself.

The vault must look at the first bytes of a connection (a ClientHello, an HTTP request) before it
knows whether to start TLS, so server-side TLS runs over memory BIOs here instead of asyncio's
transport, and bytes already read can be pushed back with `unread`.

Writes are gathered and leave in one system call (one TLS record) on `flush`, `drain`, or before
the connection waits for input: a response head and a small body go out together.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Protocol

CHUNK = 1 << 16


def _take(queued: list[bytes]) -> bytes:
    """Everything queued, as one bytes object; the queue is emptied."""
    data = b"".join(queued) if len(queued) > 1 else queued[0]
    queued.clear()
    return data


class Conn(Protocol):
    """A bidirectional byte stream."""

    async def recv(self) -> bytes:
        """The next bytes; b"" at end of stream."""
        ...

    def send(self, data: bytes) -> None:
        """Queue data for sending."""

    def flush(self) -> None:
        """Hand what was queued to the network now."""

    async def drain(self) -> None:
        """Flush, then wait until the send buffer is below its high-water mark."""

    def close_write(self) -> None:
        """Signal the end of what this side sends, and keep reading."""

    def close(self) -> None:
        """Close the stream (without waiting)."""

    def abort(self) -> None:
        """Reset the stream at once, dropping anything queued (a response cut short)."""

    def interrupt(self, error: Exception) -> None:
        """Make the pending (or next) recv raise error."""


class StreamConn:
    """A Conn over asyncio streams (plain TCP, or TLS made by asyncio for upstream connections)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._pushed_back = b""
        self._queued: list[bytes] = []

    def unread(self, data: bytes) -> None:
        """Make data the next thing recv returns."""
        self._pushed_back = data + self._pushed_back

    async def recv(self) -> bytes:
        """The next bytes; b"" at end of stream."""
        if self._pushed_back:
            data, self._pushed_back = self._pushed_back, b""
            return data
        self.flush()
        return await self.reader.read(CHUNK)

    def send(self, data: bytes) -> None:
        """Queue data for sending."""
        self._queued.append(data)

    def flush(self) -> None:
        """Hand what was queued to the transport in one write."""
        if self._queued:
            self.writer.write(_take(self._queued))

    async def drain(self) -> None:
        """Flush, then wait until the send buffer is below its high-water mark."""
        self.flush()
        await self.writer.drain()

    def interrupt(self, error: Exception) -> None:
        """Make the pending (or next) recv raise error."""
        self.reader.set_exception(error)

    def close_write(self) -> None:
        """Half-close: send FIN, keep reading."""
        with contextlib.suppress(OSError, RuntimeError):
            self.flush()
            if self.writer.can_write_eof():
                self.writer.write_eof()

    def close(self) -> None:
        """Close the stream (without waiting)."""
        with contextlib.suppress(OSError, RuntimeError):
            self.flush()
            self.writer.close()

    def abort(self) -> None:
        """Reset the connection (RST), dropping anything queued."""
        self._queued.clear()
        self.writer.transport.abort()


class TlsConn:
    """The server end of TLS over another Conn: the vault terminating the agent's TLS."""

    def __init__(self, raw: Conn, context: ssl.SSLContext) -> None:
        self.raw = raw
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._eof = False
        self._queued: list[bytes] = []

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self.raw.send(pending)
        self.raw.flush()

    async def _fill(self) -> bool:
        self.flush()
        data = await self.raw.recv()
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> None:
        """Complete the server handshake; ssl.SSLError or ConnectionError when it fails."""
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                if not await self._fill():
                    raise ConnectionResetError("peer closed during the TLS handshake") from None
            else:
                self._flush()
                await self.raw.drain()
                return

    async def recv(self) -> bytes:
        """The next decrypted bytes; b"" at end of stream."""
        while not self._eof:
            try:
                data = self._tls.read(CHUNK)
            except ssl.SSLWantReadError:
                if not await self._fill():
                    self._eof = True
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._eof = True
            else:
                self._flush()
                return data
        return b""

    def send(self, data: bytes) -> None:
        """Queue data to encrypt."""
        self._queued.append(data)

    def flush(self) -> None:
        """Encrypt what was queued (as few records as fit) and hand it to the stream."""
        if self._queued:
            self._tls.write(_take(self._queued))
        self._flush()

    async def drain(self) -> None:
        """Flush, then wait until the send buffer is below its high-water mark."""
        self.flush()
        await self.raw.drain()

    def interrupt(self, error: Exception) -> None:
        """Make the pending (or next) recv raise error."""
        self.raw.interrupt(error)

    def close_write(self) -> None:
        """Send close_notify and half-close the stream under it."""
        with contextlib.suppress(OSError, RuntimeError, ssl.SSLError):
            self.flush()
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        with contextlib.suppress(OSError, RuntimeError):
            self._flush()
        self.raw.close_write()

    def close(self) -> None:
        """Send close_notify (best effort) and close the stream."""
        self.close_write()
        self.raw.close()

    def abort(self) -> None:
        """Reset the stream under TLS at once: no close_notify, the agent sees a cut, not an end."""
        self._queued.clear()
        self.raw.abort()
