"""The response path: relay the destination's answer to the agent, scrubbed, as it arrives.

Real values are masked in the body (same length, so Content-Length still holds) and replaced by
their stubs in header names, values and the reason phrase. The body's framing and timing never
depend on the secrets: the masker always holds back the same number of bytes, and what it holds
leaves on the next chunk, at the end, or after `scrub_flush_seconds` of quiet (a timer that does
not look at the bytes), so a stream of events (SSE) still flows within a millisecond or two.

A body the vault had to decode (gzip, deflate) loses its Content-Length and goes out chunked;
encodings it cannot decode are refused with a 502 before anything is sent, and a body that fails
to decode later is cut off with a reset, never ended as if it were whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from http import HTTPStatus

from paddock_vault import h1, swap
from paddock_vault.context import Context
from paddock_vault.errors import UpstreamError
from paddock_vault.h1 import END, AgentSide, Event, Head, UpstreamSide
from paddock_vault.scrub import Masker

_DRAIN_EVERY = 1 << 18
_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"alt-svc",
        b"upgrade",
        b"trailer",
        b"transfer-encoding",
    }
)


class _Decoder:
    """Decodes a gzip (every member) or deflate (zlib or raw) body as it arrives."""

    def __init__(self, coding: bytes) -> None:
        self.coding = coding
        self._zlib: zlib._Decompress | None = None
        self._early = b""

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.coding == b"deflate":
            # RFC 9110 means zlib-wrapped; many servers send raw deflate. A zlib stream starts
            # with a header whose 16 bits are a multiple of 31 and method 8.
            wrapped = first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
            return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes of data; UpstreamError when it is not valid."""
        out = []
        data, self._early = self._early + data, b""
        try:
            while data:
                if self._zlib is None:
                    if self.coding == b"deflate" and len(data) < 2:
                        self._early = data  # too little to tell zlib from raw deflate yet
                        break
                    self._zlib = self._new(data)
                out.append(self._zlib.decompress(data))
                data = self._zlib.unused_data
                if self._zlib.eof:
                    if self.coding == b"deflate" and data:
                        raise UpstreamError("upstream sent bytes after its deflate stream")
                    # gzip: a new member may follow (RFC 1952 allows several).
                    self._zlib = None if data else self._zlib
        except zlib.error as error:
            raise UpstreamError(
                f"upstream sent a body that is not valid {self.coding.decode()}: {error}",
                reason="encoding",
            ) from None
        return b"".join(out)

    def finish(self) -> None:
        """At the end of the body: UpstreamError if the encoded stream was cut short."""
        if self._early or (self._zlib is not None and not self._zlib.eof):
            raise UpstreamError(
                f"upstream's {self.coding.decode()} body ended early", reason="encoding"
            )


def _decoder(headers: list[tuple[bytes, bytes]]) -> _Decoder | None:
    encodings = [v.strip().lower() for n, v in headers if n.lower() == b"content-encoding"]
    if not encodings or encodings == [b"identity"]:
        return None
    if encodings in ([b"gzip"], [b"x-gzip"]):
        return _Decoder(b"gzip")
    if encodings == [b"deflate"]:
        return _Decoder(b"deflate")
    raise UpstreamError(
        f"upstream sent Content-Encoding {b', '.join(encodings).decode('latin-1')}, which the "
        "vault cannot scrub (it asks for identity and decodes gzip and deflate)",
        reason="encoding",
    )


async def _final_head(ctx: Context, agent: AgentSide, upstream: UpstreamSide) -> Head:
    timeout = ctx.settings.upstream_timeout
    while True:
        event = await upstream.next_event(timeout, before_wait=agent.conn)
        if isinstance(event, Head):
            if event.status == 101:
                raise UpstreamError("upstream switched protocols unasked", reason="protocol")
            if event.status == 206:
                # The vault strips Range: pieces of a body could each hold part of a value.
                raise UpstreamError(
                    "upstream sent 206 Partial Content, which the vault never asks for",
                    reason="protocol",
                )
            codings = [v.strip().lower() for v in event.values(b"transfer-encoding")]
            if codings not in ([], [b"chunked"]):
                # A transfer coding other than chunked would hide the body from the scrubber.
                raise UpstreamError("upstream used a transfer coding besides chunked")
            if event.status >= 200:
                return event
        elif event is not END:
            raise UpstreamError("upstream sent a body before a response", reason="protocol")


def _framing(
    request: Head, head: Head, headers: list[tuple[bytes, bytes]], *, decoded: bool
) -> tuple[str, bool]:
    """(how the body goes to the agent: none|length|chunked|close, keep the connection)."""
    keep = request.keep_alive and request.version == b"1.1"
    no_body = request.method == b"HEAD" or head.status in (204, 304)
    if no_body:
        return "none", keep
    headers[:] = [(n, v) for n, v in headers if n.lower() != b"content-length"]
    if head.length is not None and not decoded:
        headers.append((b"Content-Length", b"%d" % head.length))
        return "length", keep
    if request.version == b"1.1":
        headers.append((b"Transfer-Encoding", b"chunked"))
        return "chunked", keep
    return "close", False


class _Body:
    """The agent's end of a response body: masked, framed, and drained now and then."""

    def __init__(self, agent: AgentSide, masker: Masker, framing: str) -> None:
        self.agent = agent
        self.masker = masker
        self.framing = framing
        self._undrained = 0

    def _send(self, out: bytes) -> None:
        if out and self.framing != "none":
            self.agent.send(h1.chunk(out) if self.framing == "chunked" else out)
            self._undrained += len(out)

    def feed(self, data: bytes) -> None:
        self._send(self.masker.feed(data))

    def release(self) -> None:
        """The held bytes leave now (the quiet timer fired)."""
        self._send(self.masker.release())
        self.agent.conn.flush()

    def end(self) -> None:
        self._send(self.masker.release())
        if self.framing == "chunked":
            self.agent.send(h1.LAST_CHUNK)

    async def drain(self) -> None:
        # Small bodies leave with their head; big ones wait for a slow agent.
        if self._undrained >= _DRAIN_EVERY:
            await self.agent.conn.drain()
            self._undrained = 0


async def _next(ctx: Context, agent: AgentSide, upstream: UpstreamSide, body: _Body) -> Event:
    """The next upstream event; while bytes are held and nothing comes, release them on time."""
    wait = upstream.next_event(ctx.settings.upstream_timeout, before_wait=agent.conn)
    if not body.masker.holding or upstream.has_event():
        return await wait  # nothing held, or the next event is here already: no timer needed
    pending = asyncio.ensure_future(wait)
    try:
        done, _ = await asyncio.wait({pending}, timeout=ctx.settings.scrub_flush_seconds)
        if not done:
            body.release()
        return await pending
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


async def relay(
    ctx: Context, agent: AgentSide, upstream: UpstreamSide, request: Head
) -> tuple[int, bool]:
    """Send upstream's response to the agent; (status, whether the agent connection goes on)."""
    head = await _final_head(ctx, agent, upstream)
    policy = ctx.policy
    masker = ctx.masker()
    headers = [(n, v) for n, v in head.headers if n.lower() not in _DROP]
    decoder = _decoder(headers)
    if decoder is not None:
        headers = [(n, v) for n, v in headers if n.lower() != b"content-encoding"]
    framing, keep = _framing(request, head, headers, decoded=decoder is not None)
    keep = keep and not agent.pipelined()
    if not keep:
        headers.append((b"Connection", b"close"))
    # Names, values and the reason phrase in one pass: stubs and masks hold no CR or LF.
    serialised = h1.response_head(head.status, head.reason or _phrase(head.status), headers)
    response_head = swap.scrub_head(policy, masker, serialised)
    body = _Body(agent, masker, framing)
    received = 0
    first: Event | None = None
    if decoder is not None:
        # The head waits for the first body bytes, so a body that cannot be decoded is a clean 502.
        first = await _next(ctx, agent, upstream, body)  # nothing is held yet
        if isinstance(first, bytes):
            received += len(first)
            first = decoder.decode(first)
    agent.respond(response_head)
    if isinstance(first, bytes):
        body.feed(first)
    event: Event | None = None if first is None or isinstance(first, bytes) else first
    while True:
        if event is None:
            event = await _next(ctx, agent, upstream, body)
        if event is END:
            if decoder is not None:
                decoder.finish()
            body.end()
            ctx.metrics.transfer("upstream_received", received)
            return head.status, keep
        if not isinstance(event, bytes):
            raise UpstreamError("upstream sent a second response", reason="protocol")
        received += len(event)
        body.feed(decoder.decode(event) if decoder else event)
        await body.drain()
        event = None
