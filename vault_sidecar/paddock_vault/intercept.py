"""A connection whose destination is known (after CONNECT, or redirected): TLS or plain HTTP.

TLS to a credential's host is terminated with a leaf for that host and its requests go through the
request path; TLS to a host that is only allowed is relayed untouched once its SNI matched; plain
HTTP is served without ever carrying a credential. Anything else is closed.
"""

from __future__ import annotations

import asyncio
import ssl

from paddock_vault import clienthello, forward, hosts, routing
from paddock_vault.config import Route
from paddock_vault.conn import StreamConn, TlsConn
from paddock_vault.context import Context
from paddock_vault.errors import PolicyError, RequestError
from paddock_vault.h1 import AgentSide
from paddock_vault.tunnel import splice
from paddock_vault.upstream import Destination, connect


def _server_name(hello: clienthello.ClientHello) -> str | None:
    if hello.server_name is None:
        return None
    try:
        return hosts.normalize(hello.server_name)
    except hosts.HostError:
        raise PolicyError(f"invalid TLS server name {hello.server_name!r}", reason="sni") from None


async def serve(ctx: Context, raw: StreamConn, *, mode: str, host: str | None, port: int) -> None:
    """Serve raw, a connection to host:port (host None: learn it from SNI or Host)."""
    timeout = ctx.settings.header_timeout
    try:
        async with asyncio.timeout(timeout):
            first = await raw.recv()
            if first[:1] == bytes([clienthello.HANDSHAKE]):
                hello, buffered = await clienthello.read(raw.recv, first)
    except TimeoutError:
        raise RequestError("no request in time", status=408, reason="timeout") from None
    if not first:
        return
    if first[:1] != bytes([clienthello.HANDSHAKE]):
        raw.unread(first)
        router = (
            routing.by_host(port)
            if host is None
            else routing.fixed(Destination(host, port, tls=False))
        )
        await forward.serve(
            ctx,
            AgentSide(raw, ctx.settings.max_header_bytes, ctx.settings.header_timeout),
            router,
            mode=mode,
        )
        return
    sni = _server_name(hello)
    if sni is None:
        raise PolicyError("TLS without a server name (SNI)", reason="sni")
    if host is not None and sni != host:
        raise PolicyError(f"TLS server name {sni} does not match CONNECT {host}", reason="mismatch")
    raw.unread(buffered)
    route = ctx.policy.route(sni)
    dest = Destination(sni, port, tls=route is Route.DECRYPT)
    if route is Route.DECRYPT:
        await _terminate(ctx, raw, dest, mode)
    elif route is Route.TUNNEL:
        upstream = await connect(ctx, dest)
        ctx.metrics.request(mode, "tunnelled")
        await splice(ctx, raw, upstream)
    else:
        raise PolicyError(f"{sni} is not an allowed destination", reason="destination")


async def _terminate(ctx: Context, raw: StreamConn, dest: Destination, mode: str) -> None:
    tls = TlsConn(raw, ctx.leaf_context(dest.host))
    try:
        async with asyncio.timeout(ctx.settings.header_timeout):
            await tls.handshake()
    except (ssl.SSLError, ConnectionError, TimeoutError):
        # The agent did not trust the leaf, or went away: nothing was requested.
        ctx.metrics.block(mode, "tls_handshake")
        return
    agent = AgentSide(tls, ctx.settings.max_header_bytes, ctx.settings.header_timeout)
    try:
        await forward.serve(ctx, agent, routing.fixed(dest), mode=mode)
    finally:
        tls.close()
