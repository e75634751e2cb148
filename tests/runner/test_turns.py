"""The turn registry: numbering, one turn per session, re-sends, cancel, failures, readers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from paddock.protocol import Message, RunnerEvent, TurnRequest
from paddock_runner.harness import Emit, HarnessError
from paddock_runner.turns import SessionBusyError, Turns

pytestmark = pytest.mark.unit


class Scripted:
    """A harness that emits what the turn's message says, or fails, or waits until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.runs = 0

    async def run_turn(self, request: TurnRequest, emit: Emit) -> dict[str, Any]:
        self.runs += 1
        text = request.messages[-1].content or ""
        emit("output", {"text": text})
        if text == "fail":
            raise HarnessError("it broke", exit_code=2)
        if text == "crash":
            raise ValueError("a bug")
        if text == "wait":
            await self.release.wait()
        return {"exit_code": 0}


def request(session: str, turn_id: str, text: str) -> TurnRequest:
    return TurnRequest(
        session_id=session, turn_id=turn_id, messages=[Message(role="user", content=text)]
    )


async def read_all(turns: Turns, turn_id: str, after: int = 0) -> list[RunnerEvent]:
    log = turns.get(turn_id)
    assert log is not None
    return [e async for e in log.follow(after) if e is not None]


@pytest.mark.asyncio
async def test_a_turn_is_numbered_from_one_and_ends_with_turn_end() -> None:
    turns = Turns(Scripted(), "inc-1")
    turns.start(request("s", "t1", "hi"))

    events = await read_all(turns, "t1")

    assert [(e.seq, e.type) for e in events] == [(1, "output"), (2, "turn_end")]
    assert events[-1].data == {"reason": "done", "exit_code": 0}
    assert {e.incarnation for e in events} == {"inc-1"}
    assert await read_all(turns, "t1", after=1) == events[1:]


@pytest.mark.asyncio
async def test_a_second_turn_of_a_busy_session_is_refused_and_a_resend_is_not_rerun() -> None:
    harness = Scripted()
    turns = Turns(harness, "inc")
    first = turns.start(request("s", "t1", "wait"))

    assert turns.start(request("s", "t1", "wait")) is first
    with pytest.raises(SessionBusyError):
        turns.start(request("s", "t2", "hi"))
    turns.start(request("other", "t3", "hi"))
    assert turns.busy_sessions() == ["other", "s"]

    harness.release.set()
    await read_all(turns, "t1")
    await read_all(turns, "t3")
    assert harness.runs == 2
    assert turns.busy_sessions() == []
    turns.start(request("s", "t2", "hi"))  # the session is free again


@pytest.mark.asyncio
async def test_cancel_ends_the_turn_with_reason_cancelled() -> None:
    turns = Turns(Scripted(), "inc")
    turns.start(request("s", "t1", "wait"))
    await asyncio.sleep(0)

    assert turns.cancel("t1")
    assert not turns.cancel("unknown")
    events = await read_all(turns, "t1")
    assert events[-1].data == {"reason": "cancelled"}


@pytest.mark.asyncio
async def test_failures_end_the_turn_with_an_error_event() -> None:
    turns = Turns(Scripted(), "inc")
    turns.start(request("s", "t1", "fail"))
    turns.start(request("s2", "t2", "crash"))

    failed = await read_all(turns, "t1")
    crashed = await read_all(turns, "t2")

    assert [e.type for e in failed] == ["output", "error", "turn_end"]
    assert failed[1].data == {"message": "it broke"}
    assert failed[2].data == {"reason": "error", "exit_code": 2}
    assert crashed[1].data == {"message": "ValueError: a bug"}
    assert crashed[2].data == {"reason": "error"}


@pytest.mark.asyncio
async def test_readers_wait_for_new_events_and_get_keepalives_meanwhile() -> None:
    harness = Scripted()
    turns = Turns(harness, "inc")
    log = turns.start(request("s", "t1", "wait"))
    seen: list[RunnerEvent | None] = []

    async def read() -> None:
        async for event in log.follow(0, idle_s=0.01):
            seen.append(event)
            if event is None:
                harness.release.set()  # a keep-alive came while waiting: now let the turn end

    await asyncio.wait_for(read(), 10)

    events = [e for e in seen if e is not None]
    assert [e.type for e in events] == ["output", "turn_end"]


@pytest.mark.asyncio
async def test_only_the_last_finished_turns_are_kept() -> None:
    turns = Turns(Scripted(), "inc", keep=2)
    for i in range(4):
        turns.start(request("s", f"t{i}", "hi"))
        await read_all(turns, f"t{i}")

    assert [turns.get(f"t{i}") is not None for i in range(4)] == [False, False, True, True]
