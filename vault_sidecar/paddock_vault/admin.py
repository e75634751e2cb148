"""The admin port: /healthz for probes, /metrics for Prometheus; iptables keeps the agent out."""

from __future__ import annotations

from http import HTTPStatus

from paddock_vault import h1
from paddock_vault.conn import StreamConn
from paddock_vault.context import Context
from paddock_vault.h1 import END, AgentSide


def _respond(agent: AgentSide, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"Content-Type", content_type), (b"Content-Length", b"%d" % len(body))]
    agent.respond(h1.response_head(status, HTTPStatus(status).phrase.encode(), headers) + body)


async def handle(ctx: Context, raw: StreamConn) -> None:
    """Serve admin requests on one connection."""
    agent = AgentSide(raw, 8192, ctx.settings.header_timeout)
    try:
        while True:
            request = await agent.next_request(ctx.settings.idle_timeout)
            if request is None:
                return
            while await agent.next_event(ctx.settings.header_timeout) is not END:
                pass
            path = request.target.split(b"?", 1)[0]
            if request.method != b"GET":
                _respond(agent, 405, b"method not allowed\n", b"text/plain")
            elif path == b"/healthz":
                _respond(agent, 200, b"ok\n", b"text/plain")
            elif path == b"/metrics":
                body = ctx.metrics.render().encode()
                _respond(agent, 200, body, b"text/plain; version=0.0.4; charset=utf-8")
            else:
                _respond(agent, 404, b"not found\n", b"text/plain")
            await raw.drain()
            if not request.keep_alive:
                return
    finally:
        agent.stop()
