"""Connections to the real destinations: resolve, check every address, connect, verify TLS.

A credential's value is only ever written to a connection made here with `tls=True`, that is
after the certificate chain and the host name verified; a failed verification is a 502 before a
single byte of the request was sent.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from paddock_vault.conn import StreamConn
from paddock_vault.context import Context
from paddock_vault.errors import UpstreamError
from paddock_vault.h1 import UpstreamSide
from paddock_vault.netguard import IPAddress


@dataclass(frozen=True)
class Destination:
    """Where a request goes: a normalised host name, a port, and whether TLS is used upstream."""

    host: str
    port: int
    tls: bool
    addresses: tuple[IPAddress, ...] = field(default=(), compare=False)
    """The addresses host resolved to, already checked (a CONNECT is checked before it is
    answered); empty: resolve and check when connecting."""

    def authority(self) -> str:
        """host:port, as in a CONNECT request."""
        return f"{self.host}:{self.port}"


async def connect(ctx: Context, dest: Destination) -> StreamConn:
    """A connection to dest over a checked address; UpstreamError when none can be made safely."""
    addresses = dest.addresses or await ctx.guard.resolve(dest.host, dest.port)
    timeout = ctx.settings.connect_timeout
    failure = "no address"
    for ip in addresses:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await ctx.dialer(
                    str(ip),
                    dest.port,
                    ssl=ctx.upstream_tls if dest.tls else None,
                    server_hostname=dest.host if dest.tls else None,
                    ssl_handshake_timeout=timeout if dest.tls else None,
                )
        except ssl.SSLCertVerificationError as error:
            raise UpstreamError(
                f"{dest.host}: upstream certificate does not verify ({error.verify_message})",
                reason="tls_verify",
            ) from None
        except ssl.SSLError as error:
            raise UpstreamError(f"{dest.host}: TLS failed ({error.reason})", reason="tls") from None
        except TimeoutError:
            failure = f"timed out connecting to {ip}"
        except OSError as error:
            failure = f"{ip}: {error.strerror or error}"
        else:
            return StreamConn(reader, writer)
    raise UpstreamError(f"cannot connect to {dest.authority()}: {failure}", reason="connect")


class Upstream(UpstreamSide):
    """An HTTP/1.1 connection to one destination, reused while both ends keep it alive."""

    def __init__(self, dest: Destination, conn: StreamConn, max_head: int) -> None:
        super().__init__(conn, max_head)
        self.dest = dest
        self.stream = conn


class UpstreamPool:
    """The upstream connection of one agent connection (kept while the destination stays)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.current: Upstream | None = None

    async def get(self, dest: Destination) -> Upstream:
        """A ready connection to dest: the kept one if it fits, else a new one."""
        current = self.current
        if current is not None:
            if current.dest == dest and not current.stream.reader.at_eof():
                return current
            self.discard()
        conn = await connect(self.ctx, dest)
        self.current = Upstream(dest, conn, self.ctx.settings.max_header_bytes)
        return self.current

    def release(self) -> None:
        """Keep the connection for the next request if it is reusable, else close it."""
        current = self.current
        if current is None:
            return
        if not current.reusable():
            self.discard()

    def discard(self) -> None:
        """Close the kept connection."""
        if self.current is not None:
            self.current.stop()
            self.current.conn.close()
            self.current = None
