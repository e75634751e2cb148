"""When the gateway tells the operator an Agent is in use, by writing status.lastActivityTime.

Only Agents with an idle policy (spec.lifecycle.idleAfter, or already idle-suspended) are written;
the others never see a write. The operator suspends an Agent idle for idleAfter and wakes an
idle-suspended one once lastActivityTime is later than its idleSuspendTime, so:

- a discrete use (a message posted) writes, unless this replica wrote less than a second ago;
- an ongoing use (a turn driven, an event stream open) is a Heartbeat: it writes when it starts,
  every heartbeat_seconds(idleAfter) while it lasts, and once more when it ends;
- a write to an idle-suspended Agent is never earlier than its idleSuspendTime + 1 ms, so a
  gateway clock behind the operator's cannot swallow a wake.

A failed write is logged, never raised: a user's request does not fail for it, and the driver of
a turn that waits for a wake writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from paddock_gateway.errors import AgentNotFoundError, GatewayError
from paddock_gateway.kube import AgentState, GatewayKubeClient

log = logging.getLogger(__name__)

TOUCH_GAP_SECONDS = 1.0
"""A discrete use this soon after the last write adds nothing the operator needs."""
HEARTBEAT_MAX_SECONDS = 60.0
WAKE_MARGIN = timedelta(milliseconds=1)
_FORGET_AFTER = 300.0
_MAX_REMEMBERED = 4096

Clock = Callable[[], datetime]
Pace = Callable[[float | None], float]


def heartbeat_seconds(idle_after: float | None) -> float:
    """How often ongoing use is written: a quarter of idleAfter, within 1 s .. 60 s."""
    if idle_after is None:  # idle-suspended, then its policy removed: only a wake matters
        return HEARTBEAT_MAX_SECONDS
    return min(HEARTBEAT_MAX_SECONDS, max(1.0, idle_after / 4))


def needs_wake(state: AgentState) -> bool:
    """Idle-suspended with no activity recorded after it: the operator will not wake it yet."""
    suspended_at = state.status.idle_suspend_time
    if not state.idle_suspended or suspended_at is None:
        return False
    last = state.status.last_activity_time
    return last is None or last <= suspended_at


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Written:
    value: datetime
    """The lastActivityTime written."""
    at: float
    """When, on this process's monotonic clock."""


class Activity:
    """Records use of Agents in their status, as rarely as the operator allows."""

    def __init__(
        self, kube: GatewayKubeClient, *, clock: Clock = _utc_now,
        touch_gap: float = TOUCH_GAP_SECONDS, pace: Pace = heartbeat_seconds,
    ) -> None:  # fmt: skip
        self.kube = kube
        self.clock = clock
        self.touch_gap = touch_gap
        self.pace = pace
        self._written: dict[tuple[str, str], _Written] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def touch(self, namespace: str, name: str, state: AgentState) -> None:
        """A discrete use of the Agent (as read just now); wakes it if idle-suspended."""
        if not state.tracks_activity:
            return
        floor = None
        if state.idle_suspended and state.status.idle_suspend_time is not None:
            floor = state.status.idle_suspend_time + WAKE_MARGIN
        await self.record(namespace, name, self.touch_gap, floor)

    def heartbeat(self, namespace: str, name: str) -> Heartbeat:
        """An ongoing use of the Agent, written while it lasts once started."""
        return Heartbeat(self, namespace, name)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a heartbeat or a write in the background, until done or aclose."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording activity failed", exc_info=task.exception())

    @property
    def pending(self) -> int:
        """Heartbeats and writes running in the background now."""
        return len(self._tasks)

    async def aclose(self) -> None:
        """Stop every heartbeat and pending write."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def record(
        self, namespace: str, name: str, gap: float, floor: datetime | None = None
    ) -> None:
        """Write now (or `floor`, if later) unless this replica's write within `gap` covers it."""
        key = (namespace, name)
        now = time.monotonic()
        previous = self._written.get(key)
        if previous and now - previous.at < gap and (floor is None or previous.value >= floor):
            return
        when = self.clock()
        if floor is not None:
            when = max(when, floor)
        if previous is not None:  # never backwards: a heartbeat must not undo a wake's floor
            when = max(when, previous.value)
        # Remembered before the request, so uses arriving meanwhile do not write too.
        mine = self._written[key] = _Written(when, now)
        try:
            await self.kube.record_activity(namespace, name, when)
        except asyncio.CancelledError:  # it may not have reached the API: do not count on it
            self._restore(key, mine, previous)
            raise
        except GatewayError as error:
            self._restore(key, mine, previous)
            quiet = isinstance(error, AgentNotFoundError)
            log.log(
                logging.INFO if quiet else logging.WARNING,
                "agent %s/%s: activity not recorded: %s", namespace, name, error.detail,
            )  # fmt: skip
            return
        self._forget_old(now)

    def _restore(self, key: tuple[str, str], mine: _Written, previous: _Written | None) -> None:
        """Forget a write that did not happen, unless another was remembered since."""
        if self._written.get(key) is not mine:
            return
        if previous is None:
            self._written.pop(key, None)
        else:
            self._written[key] = previous

    def _forget_old(self, now: float) -> None:
        if len(self._written) > _MAX_REMEMBERED:
            self._written = {k: w for k, w in self._written.items() if now - w.at < _FORGET_AFTER}


class Heartbeat:
    """A turn being driven or an event stream open: use of the Agent for as long as it lasts."""

    def __init__(self, activity: Activity, namespace: str, name: str) -> None:
        self.activity = activity
        self.namespace = namespace
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._tracked = False
        self._stopped = False

    def start(self) -> None:
        """Read the Agent's policy, write, and go on writing until stop (in the background)."""
        if self._task is None and not self._stopped:
            self._task = self.activity.spawn(self._beat())

    def stop(self) -> None:
        """The use ended: stop beating and write once more (in the background, so that a
        cancelled caller can stop it too)."""
        if self._task is None or self._stopped:
            return
        self._stopped = True
        self._task.cancel()
        if self._tracked:
            gap = self.activity.touch_gap
            self.activity.spawn(self.activity.record(self.namespace, self.name, gap))

    async def around(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """`chunks`, beating from the first to the last (or to the client going away)."""
        self.start()
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            self.stop()

    async def _beat(self) -> None:
        try:
            state = await self.activity.kube.agent(self.namespace, self.name)
        except GatewayError as error:
            log.info("agent %s/%s: no heartbeat: %s", self.namespace, self.name, error.detail)
            return
        if not state.tracks_activity:
            return
        self._tracked = True
        await self.activity.touch(self.namespace, self.name, state)
        interval = self.activity.pace(state.idle_after)
        while True:
            await asyncio.sleep(interval)
            # Half the interval: several streams on one Agent write about once per interval.
            await self.activity.record(self.namespace, self.name, interval / 2)
