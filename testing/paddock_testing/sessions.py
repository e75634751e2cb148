"""Reading a gateway session in tests: one turn's events, and the exactly-once check.

Typed structurally, so the core does not import the gateway: `paddock_gateway.client.Event`
fits SessionEvent, and `GatewayClient.events(...)` is the stream collect_turn reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar


class SessionEvent(Protocol):
    """A session event: its cursor, type and payload."""

    @property
    def id(self) -> str | None: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


E = TypeVar("E", bound=SessionEvent)


async def collect_turn(
    events: AsyncIterator[E],
    turn_id: str,
    on_event: Callable[[E], Awaitable[None]] | None = None,
) -> list[E]:
    """Events from a session's stream until the turn_end of `turn_id`."""
    seen: list[E] = []
    async for event in events:
        seen.append(event)
        if on_event is not None:
            await on_event(event)
        if event.type == "turn_end" and event.data.get("turn_id") == turn_id:
            return seen
    raise AssertionError("the stream ended before the turn did")


def assert_exactly_once(events: list[E]) -> None:
    """No cursor twice, cursors rising, and each runner incarnation's events of each turn
    numbered 1..n with no gap or repeat (a new Pod or runner is a new incarnation)."""
    ids = [e.id for e in events if e.id is not None]
    if len(ids) != len(set(ids)):
        raise AssertionError("an event was delivered twice")
    keys = [tuple(int(p) for p in i.split("-")) for i in ids]
    if keys != sorted(keys):
        raise AssertionError("events out of order")
    runs: dict[tuple[str, str], list[int]] = {}
    for event in events:
        if "incarnation" in event.data:
            key = (event.data["incarnation"], event.data["turn_id"])
            runs.setdefault(key, []).append(event.data["seq"])
    for key, seqs in runs.items():
        if seqs != list(range(1, len(seqs) + 1)):
            raise AssertionError(f"{key}: lost or repeated {seqs}")
