"""The admin port: /healthz for probes, /metrics for Prometheus; iptables keeps the agent out."""

from __future__ import annotations

import h11

from paddock_vault.conn import StreamConn
from paddock_vault.context import Context
from paddock_vault.h1 import AgentSide


def _respond(agent: AgentSide, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    agent.send(h11.Response(status_code=status, headers=headers))
    agent.send(h11.Data(data=body))
    agent.send(h11.EndOfMessage())


async def handle(ctx: Context, raw: StreamConn) -> None:
    """Serve admin requests on one connection."""
    agent = AgentSide(raw, 8192)
    while True:
        request = await agent.next_request(ctx.settings.idle_timeout)
        if request is None:
            return
        while not isinstance(await agent.next_event(ctx.settings.header_timeout), h11.EndOfMessage):
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
        if not agent.reusable():
            return
        agent.next_cycle()
