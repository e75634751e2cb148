"""Byte-for-byte relaying between the agent and an allowed host it may reach without decryption."""

from __future__ import annotations

import asyncio
import contextlib
import time

from paddock_vault.conn import StreamConn
from paddock_vault.context import Context


async def splice(ctx: Context, agent: StreamConn, upstream: StreamConn) -> None:
    """Relay both ways until both ends are done or nothing moved for idle_timeout."""
    last = time.monotonic()

    async def pump(src: StreamConn, dst: StreamConn, direction: str) -> None:
        nonlocal last
        total = 0
        try:
            while data := await src.recv():
                last = time.monotonic()
                total += len(data)
                dst.send(data)
                await dst.drain()
            if dst.writer.can_write_eof():
                dst.writer.write_eof()
        finally:
            ctx.metrics.transfer(direction, total)

    tasks = {
        asyncio.create_task(pump(agent, upstream, "upstream_sent")),
        asyncio.create_task(pump(upstream, agent, "upstream_received")),
    }
    idle = ctx.settings.idle_timeout
    try:
        pending = tasks
        while pending:
            done, pending = await asyncio.wait(pending, timeout=min(idle, 5.0))
            if any(t.exception() is not None for t in done) or time.monotonic() - last > idle:
                break
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        upstream.close()
