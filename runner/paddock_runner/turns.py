"""Turns in flight and recently finished: their numbered events, their readers, and cancel.

One turn at a time per session. Each turn's events are numbered from 1 and kept in memory until
`keep` newer turns have finished, so a reader can reconnect with `after=` and miss nothing. Nothing
survives a restart: a new process is a new incarnation, and the gateway re-sends what it lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from paddock.protocol import EventType, RunnerEvent, TurnRequest
from paddock_runner.harness import Harness, HarnessError

log = logging.getLogger(__name__)


class SessionBusyError(Exception):
    """Another turn of the session is still running (HTTP 409)."""


class TurnLog:
    """The events of one turn, appended by the harness and read by any number of readers."""

    def __init__(self, incarnation: str, request: TurnRequest) -> None:
        self.incarnation = incarnation
        self.request = request
        self.events: list[RunnerEvent] = []
        self._changed = asyncio.Event()
        self._interrupted = False

    @property
    def ended(self) -> bool:
        """Whether turn_end has been appended."""
        return bool(self.events) and self.events[-1].type == "turn_end"

    def emit(self, type: EventType, data: dict[str, Any]) -> None:
        """Append an event with the next seq and wake the readers."""
        if self.ended:
            raise RuntimeError(f"turn {self.request.turn_id} has ended")
        self.events.append(
            RunnerEvent(
                incarnation=self.incarnation,
                seq=len(self.events) + 1,
                turn_id=self.request.turn_id,
                type=type,
                data=data,
            )
        )
        self._changed.set()
        self._changed = asyncio.Event()

    def interrupt(self) -> None:
        """End every reader's stream now, without turn_end: the runner is going away."""
        self._interrupted = True
        self._changed.set()

    async def follow(
        self, after: int = 0, idle_s: float | None = None
    ) -> AsyncIterator[RunnerEvent | None]:
        """Events with seq > `after` until turn_end; None after `idle_s` idle (keep-alive)."""
        cursor = after
        while True:
            while cursor < len(self.events):
                cursor += 1
                yield self.events[cursor - 1]
            if self.ended or self._interrupted:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), idle_s)
            except TimeoutError:
                yield None


class Turns:
    """The runner's turns, keyed by turn_id; starts each as a task running the harness."""

    def __init__(self, harness: Harness, incarnation: str, keep: int = 64) -> None:
        self.harness = harness
        self.incarnation = incarnation
        self.keep = keep
        self._logs: OrderedDict[str, TurnLog] = OrderedDict()
        self._running: dict[str, tuple[str, asyncio.Task[None]]] = {}  # session -> (turn, task)

    def start(self, request: TurnRequest) -> TurnLog:
        """Start the turn, or return it if it is already known (a re-sent POST)."""
        known = self._logs.get(request.turn_id)
        if known is not None:
            if known.request.session_id != request.session_id:
                raise SessionBusyError(f"turn {request.turn_id} belongs to another session")
            return known
        if request.session_id in self._running:
            turn_id, _ = self._running[request.session_id]
            raise SessionBusyError(f"session {request.session_id} is running turn {turn_id}")
        turn = TurnLog(self.incarnation, request)
        self._logs[request.turn_id] = turn
        task = asyncio.create_task(self._run(turn), name=f"turn {request.turn_id}")
        self._running[request.session_id] = (request.turn_id, task)
        return turn

    def get(self, turn_id: str) -> TurnLog | None:
        """The turn, if this incarnation knows it."""
        return self._logs.get(turn_id)

    def cancel(self, turn_id: str) -> bool:
        """Cancel the turn if it runs (it ends with turn_end(cancelled)); False if unknown."""
        turn = self._logs.get(turn_id)
        if turn is None:
            return False
        running = self._running.get(turn.request.session_id)
        if running is not None and running[0] == turn_id:
            running[1].cancel()
        return True

    def busy_sessions(self) -> list[str]:
        """Sessions with a turn running."""
        return sorted(self._running)

    def interrupt_readers(self) -> None:
        """End every open event stream (see TurnLog.interrupt)."""
        for turn in self._logs.values():
            turn.interrupt()

    async def close(self) -> None:
        """Cancel every running turn and wait for them to end."""
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, turn: TurnLog) -> None:
        end: dict[str, Any] = {"reason": "done"}
        try:
            end |= await self.harness.run_turn(turn.request, turn.emit)
        except asyncio.CancelledError:
            end = {"reason": "cancelled"}
        except HarnessError as error:
            turn.emit("error", {"message": str(error)})
            end = {**error.end, "reason": "error"}
        except Exception as error:  # a bug or an outage: the turn ends, the runner goes on
            log.exception("turn %s failed", turn.request.turn_id)
            turn.emit("error", {"message": f"{type(error).__name__}: {error}"})
            end = {"reason": "error"}
        finally:
            turn.emit("turn_end", end)
            del self._running[turn.request.session_id]
            self._forget_old()

    def _forget_old(self) -> None:
        finished = [tid for tid, t in self._logs.items() if t.ended]
        for turn_id in finished[: max(0, len(finished) - self.keep)]:
            del self._logs[turn_id]
