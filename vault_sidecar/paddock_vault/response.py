"""The response path: relay the destination's answer to the agent, scrubbed, as it arrives.

Real values are masked in the body (same length, so Content-Length still holds) and replaced by
their stubs in header fields. A body the vault had to decode (gzip, deflate) loses its
Content-Length and goes out chunked; encodings it cannot decode are refused.
"""

from __future__ import annotations

import zlib
from http import HTTPStatus

from paddock_vault import h1, swap
from paddock_vault.context import Context
from paddock_vault.errors import UpstreamError
from paddock_vault.h1 import END, AgentSide, Head, UpstreamSide
from paddock_vault.scrub import StreamRewriter

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


async def _final_head(ctx: Context, agent: AgentSide, upstream: UpstreamSide) -> Head:
    timeout = ctx.settings.upstream_timeout
    while True:
        event = await upstream.next_event(timeout, before_wait=agent.conn)
        if isinstance(event, Head):
            if event.status == 101:
                raise UpstreamError("upstream switched protocols unasked", reason="protocol")
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


async def relay(
    ctx: Context, agent: AgentSide, upstream: UpstreamSide, request: Head, decrypted: bool
) -> tuple[int, bool]:
    """Send upstream's response to the agent; (status, whether the agent connection goes on)."""
    head = await _final_head(ctx, agent, upstream)
    policy = ctx.policy
    headers = [(n, v) for n, v in head.headers if n.lower() not in _DROP]
    decoder = _decoder(headers) if decrypted else None
    if decoder is not None:
        headers = [(n, v) for n, v in headers if n.lower() != b"content-encoding"]
    body, keep = _framing(request, head, headers, decoded=decoder is not None)
    keep = keep and not agent.pipelined()
    if not keep:
        headers.append((b"Connection", b"close"))
    reason = swap.scrub_value(policy, head.reason) or HTTPStatus(head.status).phrase.encode()
    agent.respond(h1.response_head(head.status, reason, swap.scrub_headers(policy, headers)))
    scrubber = StreamRewriter(swap.body_scrub(policy))
    chunked = body == "chunked"
    received = undrained = 0
    while True:
        event = await upstream.next_event(ctx.settings.upstream_timeout, before_wait=agent.conn)
        if event is END:
            tail = (scrubber.feed(decoder.flush()) if decoder else b"") + scrubber.flush()
            if tail and body != "none":
                agent.send(h1.chunk(tail) if chunked else tail)
            if chunked:
                agent.send(h1.LAST_CHUNK)
            ctx.metrics.transfer("upstream_received", received)
            return head.status, keep
        if not isinstance(event, bytes):
            raise UpstreamError("upstream sent a second response", reason="protocol")
        received += len(event)
        out = scrubber.feed(decoder.decompress(event) if decoder else event)
        if out and body != "none":
            agent.send(h1.chunk(out) if chunked else out)
            undrained += len(out)
        # Small bodies leave with their head; big ones wait for a slow agent.
        if undrained >= _DRAIN_EVERY:
            await agent.conn.drain()
            undrained = 0
