"""The request path: read a request from the agent, check and rewrite it, relay it, scrub the reply.

`serve` runs the exchanges of one agent connection, in order; `Router` decides each request's
destination from how the connection arrived (a CONNECT, a redirect, a proxy request) and refuses
requests whose Host or target disagrees with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from paddock_vault import audit, h1, response, swap
from paddock_vault.config import Route
from paddock_vault.conn import TlsConn
from paddock_vault.context import Context
from paddock_vault.errors import PolicyError, RequestError, UpstreamError, VaultError
from paddock_vault.h1 import END, AgentSide, Head
from paddock_vault.scrub import ForbiddenError, Guard, Masker
from paddock_vault.upstream import Destination, Upstream, UpstreamPool

Router = Callable[[Head], tuple[Destination, bytes]]
"""A request -> (its destination, the origin-form target to send); raises VaultError."""

_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20
# Framing is the vault's to set; Range would let a response come back in pieces that no single
# piece of holds a whole value to mask (the vault also refuses a 206 it never asked for).
_DROP = frozenset(
    {b"content-length", b"transfer-encoding", b"accept-encoding", b"range", b"if-range"}
)


def error_response(error: VaultError, masker: Masker) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection.

    The message may quote what a peer sent (an upstream's header, a name): it is masked like any
    response the agent sees.
    """
    text = f"paddock vault: {error.message}\n".encode("utf-8", "replace")
    body = masker.text(text)
    status = error.status if 400 <= error.status <= 599 else 500
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + f"X-Paddock-Vault: {error.reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _expects_continue(request: Head) -> bool:
    return request.version == b"1.1" and any(
        v.lower() == b"100-continue" for v in request.values(b"expect")
    )


@dataclass
class _Exchange:
    ctx: Context
    agent: AgentSide
    pool: UpstreamPool
    mode: str
    request: Head
    dest: Destination | None = None
    target: bytes = b""

    def where(self) -> dict[str, Any]:
        dest = self.dest
        return {
            "host": dest.host if dest else None,
            "port": dest.port if dest else None,
            "method": self.request.method,
            "target": self.target or None,
        }

    def _outgoing(self, dest: Destination) -> swap.Outgoing:
        policy = self.ctx.policy
        route = policy.route(dest.host)
        if route is Route.REFUSE or (route is Route.TUNNEL and dest.tls):
            raise PolicyError(f"{dest.host} is not an allowed destination", reason="destination")
        request = self.request
        return swap.rewrite_request(
            policy,
            dest.host,
            secure=dest.tls,
            target=self.target,
            headers=request.headers,
            raw=request.raw,
        )

    def _headers(self, outgoing: swap.Outgoing) -> list[tuple[bytes, bytes]]:
        request = self.request
        headers = [(n, v) for n, v in outgoing.headers if n.lower() not in _DROP]
        if request.chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        elif request.length is not None:
            headers.append((b"Content-Length", b"%d" % request.length))
        # The vault must see response bodies in clear text to scrub them.
        headers.append((b"Accept-Encoding", b"identity"))
        return headers

    async def run(self, router: Router) -> bool:
        started = time.monotonic()
        request = self.request
        if request.upgrade:
            raise RequestError("protocol upgrades are not supported", status=501)
        dest, self.target = router(request)
        self.dest = dest
        self.ctx.check_port(dest.port)
        outgoing = self._outgoing(dest)
        if _expects_continue(request):
            self.agent.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        upstream = await self.pool.get(dest)
        upstream.send(h1.request_head(request.method, outgoing.target, self._headers(outgoing)))
        upstream.expect_response(head_only=request.method == b"HEAD")
        guard = Guard(swap.body_guard(self.ctx.policy, dest.host, secure=dest.tls))
        await self._request_body(upstream, guard)
        status, keep = await response.relay(self.ctx, self.agent, upstream, request)
        self.ctx.metrics.request(self.mode, "forwarded", time.monotonic() - started)
        audit.record(
            "forwarded", mode=self.mode, status=status, credentials=outgoing.swapped, **self.where()
        )
        self.pool.release()
        return keep

    async def _request_body(self, upstream: Upstream, guard: Guard) -> None:
        settings = self.ctx.settings
        chunked = self.request.chunked
        total = 0
        while True:
            event = await self.agent.next_event(settings.header_timeout, before_wait=upstream.conn)
            if event is END:
                tail = self._guarded(guard.finish)
                if tail:
                    upstream.send(h1.chunk(tail) if chunked else tail)
                if chunked:
                    upstream.send(h1.LAST_CHUNK)
                self.ctx.metrics.transfer("upstream_sent", total)
                return
            if not isinstance(event, bytes):
                raise RequestError("unexpected message inside a request body")
            total += len(event)
            if total > settings.max_body_bytes:
                raise RequestError("request body too large", status=413, reason="limit")
            data = self._guarded(guard.feed, event)
            if data:
                upstream.send(h1.chunk(data) if chunked else data)
                try:
                    await upstream.conn.drain()
                except OSError as error:
                    raise UpstreamError(f"upstream closed: {error}", reason="connect") from None

    def _guarded(self, step: Callable[..., bytes], *args: bytes) -> bytes:
        """step(*args), a Guard's; a forbidden credential becomes the PolicyError the agent gets."""
        try:
            return step(*args)
        except ForbiddenError:
            raise PolicyError(
                "the request body holds a credential that may not go to "
                f"{self.dest.host if self.dest else '?'}",
                reason="credential_blocked",
            ) from None


async def serve(
    ctx: Context,
    agent: AgentSide,
    router: Router,
    *,
    mode: str,
    first: Head | None = None,
) -> None:
    """Run the agent connection's exchanges until either side closes or a request is refused."""
    pool = UpstreamPool(ctx)
    request = first
    exchange: _Exchange | None = None
    try:
        while True:
            if request is None:
                request = await agent.next_request(ctx.settings.idle_timeout)
                if request is None:
                    return
            exchange = _Exchange(ctx, agent, pool, mode, request)
            if not await exchange.run(router):
                await agent.conn.drain()
                return
            request = None
    except VaultError as error:
        where = exchange.where() if exchange is not None else {}
        ctx.refusal(error, mode, **where)
        await refuse(agent, error, ctx.masker())
    finally:
        agent.stop()
        pool.discard()


async def refuse(agent: AgentSide, error: VaultError, masker: Masker) -> None:
    """Answer with an error, if no response has started on this connection, and let it close.

    A response that had started is cut short: the connection is reset rather than closed, so the
    agent can never take what it got for a whole body.
    """
    if agent.response_started:
        agent.conn.abort()
        return
    agent.respond(error_response(error, masker))
    with contextlib.suppress(OSError):
        await agent.conn.drain()
    # Read what the agent is still sending (a body the vault refused) for a moment before the
    # caller closes: closing with unread input resets the connection and can lose the answer.
    agent.conn.close_write()
    # Under TLS, after close_notify, only the raw bytes can still be read.
    raw = agent.conn.raw if isinstance(agent.conn, TlsConn) else agent.conn
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(_LINGER_SECONDS):
            drained = 0
            while drained < _LINGER_BYTES and (data := await raw.recv()):
                drained += len(data)
