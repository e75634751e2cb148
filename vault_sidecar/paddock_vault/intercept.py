"""A connection whose destination is known (after CONNECT, or redirected): TLS or plain HTTP.

TLS to a credential's host is terminated with a leaf for that host and its requests go through the
request path; TLS to a host that is only allowed is relayed untouched once its SNI matched; plain
HTTP is served without ever carrying a credential. TLS that is refused (a name not allowed or not
matching, an unsafe address) is terminated too, with a leaf for the name it asked for, and
answered with an HTTP error that says why, instead of a bare close the client reports as
SSL_ERROR_SYSCALL or ECONNRESET.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from paddock_vault import clienthello, forward, hosts, routing
from paddock_vault.config import Route
from paddock_vault.conn import StreamConn, TlsConn
from paddock_vault.context import Context
from paddock_vault.errors import PolicyError, RequestError, VaultError
from paddock_vault.h1 import AgentSide
from paddock_vault.netguard import IPAddress
from paddock_vault.tunnel import splice
from paddock_vault.upstream import Destination, connect


def _server_name(hello: clienthello.ClientHello) -> str | None:
    if hello.server_name is None:
        return None
    try:
        return hosts.normalize(hello.server_name)
    except hosts.HostError:
        raise PolicyError(f"invalid TLS server name {hello.server_name!r}", reason="sni") from None


async def serve(
    ctx: Context,
    raw: StreamConn,
    *,
    mode: str,
    host: str | None,
    port: int,
    address: str | None = None,
    addresses: tuple[IPAddress, ...] = (),
) -> None:
    """Serve raw, a connection to host:port (host None: learn it from SNI or Host).

    address: the IP address it was sent to, which names the leaf of a refusal when nothing else
    does; addresses: what host resolved to, already checked.
    """
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
            else routing.fixed(Destination(host, port, tls=False, addresses=addresses))
        )
        agent = AgentSide(raw, ctx.settings.max_header_bytes, ctx.settings.header_timeout)
        await forward.serve(ctx, agent, router, mode=mode)
        return
    sni = _server_name(hello)
    raw.unread(buffered)
    try:
        if sni is None:
            raise PolicyError("TLS without a server name (SNI)", reason="sni")
        if host is not None and sni != host:
            raise PolicyError(
                f"TLS server name {sni} does not match CONNECT {host}", reason="mismatch"
            )
        route = ctx.policy.route(sni)
        dest = Destination(sni, port, tls=route is Route.DECRYPT, addresses=addresses)
        if route is Route.REFUSE:
            raise PolicyError(f"{sni} is not an allowed destination", reason="destination")
        upstream = await connect(ctx, dest) if route is Route.TUNNEL else None
    except VaultError as error:
        await _refuse_in_tls(ctx, raw, sni or host or address, error, mode=mode, port=port)
        return
    if upstream is None:
        await _terminate(ctx, raw, dest, mode)
        return
    ctx.metrics.request(mode, "tunnelled")
    await splice(ctx, raw, upstream)


async def _refuse_in_tls(
    ctx: Context, raw: StreamConn, name: str | None, error: VaultError, *, mode: str, port: int
) -> None:
    """Answer a refused TLS connection readably: the handshake with a leaf of the Agent CA for
    the name the client asked for, then an HTTP error response saying why."""
    ctx.refusal(error, mode, host=name, port=port)
    if name is None:
        return  # no name to present a certificate for: the connection just closes
    tls = TlsConn(raw, ctx.leaf_context(name))
    try:
        async with asyncio.timeout(ctx.settings.header_timeout):
            await tls.handshake()
    except (ssl.SSLError, ConnectionError, TimeoutError):
        ctx.metrics.block(mode, "tls_handshake")  # the client does not trust the Agent CA
        return
    agent = AgentSide(tls, ctx.settings.max_header_bytes, ctx.settings.header_timeout)
    try:
        # Read the request first (a client that speaks HTTP), so the answer is not lost.
        with contextlib.suppress(VaultError):
            await agent.next_request(ctx.settings.header_timeout)
        await forward.refuse(agent, error, ctx.masker())
    finally:
        agent.stop()
        tls.close()


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
