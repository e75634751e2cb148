"""Explicit proxy mode (HTTP_PROXY / HTTPS_PROXY): CONNECT tunnels and plain proxy requests."""

from __future__ import annotations

from paddock_vault import forward, hosts, intercept, routing
from paddock_vault.config import Route
from paddock_vault.conn import StreamConn
from paddock_vault.context import Context
from paddock_vault.errors import PolicyError, RequestError
from paddock_vault.h1 import AgentSide

MODE = "explicit"


async def handle(ctx: Context, raw: StreamConn) -> None:
    """Serve one connection to the proxy port."""
    agent = AgentSide(raw, ctx.settings.max_header_bytes, ctx.settings.header_timeout)
    try:
        request = await agent.next_request(ctx.settings.header_timeout)
    except RequestError as error:
        ctx.refusal(error, MODE, host=None)
        await forward.refuse(agent, error, ctx.masker())
        return
    if request is None:
        return
    if request.method != b"CONNECT":
        await forward.serve(ctx, agent, routing.proxy_request, mode=MODE, first=request)
        return
    try:
        host, port = hosts.split_authority(request.target.decode("ascii"))
        ctx.check_port(port)
        if ctx.policy.route(host) is Route.REFUSE:
            raise PolicyError(f"{host} is not an allowed destination", reason="destination")
        # Where the tunnel leads is resolved and checked before it is granted, so a refusal is
        # a readable 403 to the CONNECT, not a connection closed inside TLS; the tunnel then
        # connects to exactly these addresses.
        addresses = tuple(await ctx.guard.resolve(host, port))
    except (UnicodeDecodeError, hosts.HostError) as error:
        failure: RequestError | PolicyError = RequestError(f"invalid CONNECT target: {error}")
    except PolicyError as error:
        failure = error
    else:
        agent.respond(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        raw.unread(agent.leftover())
        await intercept.serve(ctx, raw, mode=MODE, host=host, port=port, addresses=addresses)
        return
    ctx.refusal(failure, MODE, host=None, method=b"CONNECT", target=request.target)
    await forward.refuse(agent, failure, ctx.masker())
