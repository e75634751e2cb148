"""Which replica drives which session: take a session's lease when it has work, or when the
replica that drove it stopped renewing; run a TurnDriver for each lease held."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from paddock_gateway.driver import TurnDriver
from paddock_gateway.store import SessionInfo, Store

log = logging.getLogger(__name__)

DriverFactory = Callable[[SessionInfo, str], TurnDriver]


class Supervisor:
    """Starts drivers for sessions this replica wins the lease of; sweeps for orphaned ones."""

    def __init__(
        self, store: Store, make_driver: DriverFactory, lease: float, sweep: float
    ) -> None:
        self.store = store
        self.make_driver = make_driver
        self.lease = lease
        self.sweep_seconds = sweep
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sweeping for sessions that have work and no live driver."""
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Stop every driver here; their leases are released so other replicas go on at once."""
        tasks = [*self._drivers.values(), *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._drivers.clear()

    async def kick(self, session_id: str) -> None:
        """Drive the session from here if no replica does (called when a message arrives)."""
        # No shortcut on self._drivers: a driver here may be giving its lease up right now.
        token = await self.store.acquire(session_id, self.lease)
        if token is None:
            return
        session = await self.store.locate(session_id)
        if session is None:
            await self.store.release(session_id, token)
            return
        task = asyncio.create_task(self.make_driver(session, token).run())
        self._drivers[session_id] = task
        task.add_done_callback(lambda done: self._forget(session_id, done))

    def _forget(self, session_id: str, task: asyncio.Task[None]) -> None:
        if self._drivers.get(session_id) is task:
            del self._drivers[session_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("driving session %s failed", session_id, exc_info=task.exception())

    async def sweep(self) -> None:
        """Try once to take every session with work that no replica holds a lease on."""
        for session_id in await self.store.active():
            await self.kick(session_id)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping for sessions to drive failed; trying again")
            await asyncio.sleep(self.sweep_seconds)
