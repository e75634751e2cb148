"""The operator's request gate: a bounded number in flight, urgent requests first (pure logic)."""

from __future__ import annotations

import asyncio

import pytest

from paddock_operator.kube.priority import NORMAL, URGENT, Priority, PriorityGate, current, urgent

pytestmark = pytest.mark.asyncio


async def admission_order(requests: list[tuple[str, Priority]]) -> list[str]:
    """The order in which requests, all waiting on a gate with its one place held, get in."""
    gate = PriorityGate(1)
    admitted: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot((NORMAL, 0)):
            await release.wait()

    async def one(name: str, priority: Priority) -> None:
        async with gate.slot(priority):
            admitted.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(one(name, priority)) for name, priority in requests]
    await asyncio.sleep(0)
    assert admitted == []  # the one place is held
    release.set()
    await asyncio.gather(holder, *waiters)
    return admitted


async def test_waiters_get_in_by_priority_then_in_order() -> None:
    requests = [("n1", (NORMAL, 0)), ("u1", (URGENT, 0)), ("n2", (NORMAL, 0)), ("u2", (URGENT, 0))]
    assert await admission_order(requests) == ["u1", "u2", "n1", "n2"]


async def test_never_more_than_the_limit_in_flight() -> None:
    gate = PriorityGate(3)
    inside = peak = 0

    async def one(priority: Priority) -> None:
        nonlocal inside, peak
        async with gate.slot(priority):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(one((i % 2, 0)) for i in range(40)))
    assert peak == 3


async def test_a_cancelled_waiter_does_not_lose_a_place() -> None:
    gate = PriorityGate(1)

    async def enter() -> None:
        async with gate.slot((URGENT, 0)):
            pass

    # Cancelled while it waits: the place skips it.
    async with gate.slot((NORMAL, 0)):
        waiting = asyncio.create_task(enter())
        await asyncio.sleep(0)
        waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.wait_for(enter(), timeout=1)

    # Handed the place, then cancelled before it ran: it gives the place back.
    async with gate.slot((NORMAL, 0)):
        handed = asyncio.create_task(enter())
        await asyncio.sleep(0)
    handed.cancel()  # leaving the block handed it the place; it has not run since
    assert isinstance((await asyncio.gather(handed, return_exceptions=True))[0], BaseException)
    await asyncio.wait_for(enter(), timeout=1)


async def test_among_urgent_requests_a_lower_rank_goes_first() -> None:
    """The first Agent's Pod goes before later Agents' first requests (arrival rank)."""
    with urgent(3):  # what the client reads from the context for each request
        assert current() == (URGENT, 3)
    assert current() == (NORMAL, 0)
    ranks = [("secret-3", 3), ("secret-2", 2), ("pod-1", 1), ("status-0", None), ("secret-4", 4)]
    requests = [(name, (NORMAL, 0) if r is None else (URGENT, r)) for name, r in ranks]
    assert await admission_order(requests) == [
        "pod-1",
        "secret-2",
        "secret-3",
        "secret-4",
        "status-0",
    ]
