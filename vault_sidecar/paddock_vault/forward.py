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
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11

from paddock_vault import audit, swap
from paddock_vault.config import Route
from paddock_vault.conn import TlsConn
from paddock_vault.context import Context
from paddock_vault.errors import PolicyError, RequestError, UpstreamError, VaultError
from paddock_vault.h1 import AgentSide
from paddock_vault.scrub import ForbiddenError, StreamRewriter
from paddock_vault.upstream import Destination, Upstream, UpstreamPool

Router = Callable[[h11.Request], tuple[Destination, bytes]]
"""A request -> (its destination, the origin-form target to send); raises VaultError."""

_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20
_RESPONSE_DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"alt-svc", b"upgrade", b"trailer"}
)


def error_response(error: VaultError) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = f"paddock vault: {error.message}\n".encode("utf-8", "replace")
    status = error.status if 400 <= error.status <= 599 else 500
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + f"X-Paddock-Vault: {error.reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@dataclass
class _Exchange:
    ctx: Context
    agent: AgentSide
    pool: UpstreamPool
    mode: str
    request: h11.Request
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

    async def run(self, router: Router) -> bool:
        started = time.monotonic()
        self.dest, self.target = router(self.request)
        policy = self.ctx.policy
        route = policy.route(self.dest.host)
        if route is Route.REFUSE or (route is Route.TUNNEL and self.dest.tls):
            raise PolicyError(
                f"{self.dest.host} is not an allowed destination", reason="destination"
            )
        outgoing = swap.rewrite_request(
            policy,
            self.dest.host,
            secure=self.dest.tls,
            target=self.target,
            headers=list(self.request.headers.raw_items()),
        )
        headers = outgoing.headers
        if self.dest.tls:
            # The vault must see response bodies in clear text to scrub them.
            headers = [(n, v) for n, v in headers if n.lower() != b"accept-encoding"]
            headers.append((b"Accept-Encoding", b"identity"))
        if self.agent.h11.they_are_waiting_for_100_continue:
            self.agent.send(h11.InformationalResponse(status_code=100, headers=[]))
        upstream = await self.pool.get(self.dest)
        upstream.send(
            h11.Request(method=self.request.method, target=outgoing.target, headers=headers)
        )
        guard = StreamRewriter(swap.body_guard(policy, self.dest.host, secure=self.dest.tls))
        await self._request_body(upstream, guard)
        status = await self._response(upstream)
        self.ctx.metrics.request(self.mode, "forwarded", time.monotonic() - started)
        audit.record(
            "forwarded",
            mode=self.mode,
            status=status,
            credentials=outgoing.swapped,
            **self.where(),
        )
        self.pool.release()
        return self.agent.reusable()

    async def _request_body(self, upstream: Upstream, guard: StreamRewriter) -> None:
        settings = self.ctx.settings
        total = 0
        while True:
            event = await self.agent.next_event(settings.header_timeout)
            if isinstance(event, h11.Data):
                total += len(event.data)
                if total > settings.max_body_bytes:
                    raise RequestError("request body too large", status=413, reason="limit")
                try:
                    data = guard.feed(event.data)
                except ForbiddenError:
                    raise PolicyError(
                        "the request body holds a credential that may not go to "
                        f"{self.dest.host if self.dest else '?'}",
                        reason="credential_blocked",
                    ) from None
                if data:
                    upstream.send(h11.Data(data=data))
                    await self._drain_upstream(upstream)
            elif isinstance(event, h11.EndOfMessage):
                tail = guard.flush()
                if tail:
                    upstream.send(h11.Data(data=tail))
                upstream.send(h11.EndOfMessage())
                self.ctx.metrics.transfer("upstream_sent", total)
                return
            else:
                raise RequestError("connection closed inside the request body")

    async def _drain_upstream(self, upstream: Upstream) -> None:
        try:
            await upstream.conn.drain()
        except OSError as error:
            raise UpstreamError(f"upstream closed: {error}", reason="connect") from None

    async def _response(self, upstream: Upstream) -> int:
        timeout = self.ctx.settings.upstream_timeout
        while True:
            event = await upstream.next_event(timeout)
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):
                raise UpstreamError("upstream closed without a response", reason="protocol")
        policy = self.ctx.policy
        status = event.status_code
        headers = [(n, v) for n, v in event.headers.raw_items() if n.lower() not in _RESPONSE_DROP]
        decoder = _decoder(headers) if self.dest and self.dest.tls else None
        if decoder is not None:
            headers = [
                (n, v)
                for n, v in headers
                if n.lower() not in (b"content-encoding", b"content-length")
            ]
        self.agent.send(
            h11.Response(
                status_code=event.status_code,
                headers=swap.scrub_headers(policy, headers),
                reason=event.reason,
            )
        )
        scrubber = StreamRewriter(swap.body_scrub(policy))
        received = 0
        while True:
            event = await upstream.next_event(timeout)
            if isinstance(event, h11.Data):
                received += len(event.data)
                data = decoder.decompress(event.data) if decoder else event.data
                out = scrubber.feed(data)
                if out:
                    self.agent.send(h11.Data(data=out))
                    await self.agent.conn.drain()
            elif isinstance(event, h11.EndOfMessage):
                tail = scrubber.flush()
                if tail:
                    self.agent.send(h11.Data(data=tail))
                trailers = swap.scrub_headers(policy, list(event.headers.raw_items()))
                self.agent.send(h11.EndOfMessage(headers=trailers))
                self.ctx.metrics.transfer("upstream_received", received)
                return status
            else:
                raise UpstreamError("upstream closed inside the response body", reason="protocol")


def _decoder(headers: list[tuple[bytes, bytes]]) -> zlib._Decompress | None:
    encodings = [v.strip().lower() for n, v in headers if n.lower() == b"content-encoding"]
    if not encodings or encodings == [b"identity"]:
        return None
    if encodings in ([b"gzip"], [b"x-gzip"]):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encodings == [b"deflate"]:
        return zlib.decompressobj()
    raise UpstreamError(
        f"upstream sent Content-Encoding {b', '.join(encodings).decode('latin-1')}, which the "
        "vault cannot scrub",
        reason="encoding",
    )


async def serve(
    ctx: Context,
    agent: AgentSide,
    router: Router,
    *,
    mode: str,
    first: h11.Request | None = None,
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
                return
            agent.next_cycle()
            request = None
    except VaultError as error:
        where = exchange.where() if exchange is not None else {}
        ctx.refusal(error, mode, **where)
        await refuse(agent, error)
    finally:
        pool.discard()


async def refuse(agent: AgentSide, error: VaultError) -> None:
    """Answer with an error, if no response has started on this connection, and let it close."""
    if not agent.response_started:
        agent.conn.send(error_response(error))
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
