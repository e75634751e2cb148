"""Which of the operator's requests go first when too many wait: the priority gate.

The client (paddock_operator.kube.client) holds each request in a PriorityGate slot; the priority
comes from the context, set with urgent() around the requests a new sandbox Pod waits on.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

URGENT = 0
"""Level of the requests a new sandbox Pod waits on (see urgent())."""
NORMAL = 1
Priority = tuple[int, int]
"""(level, rank): lower goes first, then in order of asking."""
_priority: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "priority", default=(NORMAL, 0)
)


def current() -> Priority:
    """The priority of requests made here: NORMAL unless inside urgent()."""
    return _priority.get()


@contextmanager
def urgent(rank: int = 0) -> Iterator[None]:
    """Requests made in this block (and in tasks it starts) go before waiting NORMAL ones.

    With many Agents reconciling at once, each Agent's Pod then waits on the Pods of the others,
    not on their Services, policies and status writes. Among urgent requests a lower rank goes
    first: given each Agent's arrival, the first Agent's Pod goes before the next Agents' Secrets,
    so that Pods come one after the other instead of all at the end.
    """
    token = _priority.set((URGENT, rank))
    try:
        yield
    finally:
        _priority.reset(token)


class PriorityGate:
    """At most `limit` holders at once; waiters get in by priority (lower first), then in order."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        """Hold one place for the block."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # handed a place, then cancelled
                    self._release()
                raise  # a cancelled waiter stays in the heap, done: _release skips it
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the place passes straight to the next waiter
                return
        self._free += 1
