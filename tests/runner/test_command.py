"""The runner driving a command-line harness: a real process per turn, its lines as events."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from paddock.protocol import Message, RunnerEvent, TurnRequest
from paddock_testing.proc import gone
from paddock_testing.runner import RunnerProcess, run_turn, runner_events, start_turn, turn_events

pytestmark = pytest.mark.integration

StartRunner = Callable[..., RunnerProcess]

# A stand-in harness: a shell script that says who it is, what it was asked and where it runs.
ECHO = ["sh", "-c", 'echo "pid $$"; echo "you said: $1"; echo "turn $PADDOCK_TURN_ID"; pwd', "sh"]
# One that prints its pid, then waits (exec: the pid is the sleep's own).
SLOW = ["sh", "-c", "echo $$; exec sleep 60"]


def turn(session: str, turn_id: str, text: str) -> TurnRequest:
    return TurnRequest(
        session_id=session, turn_id=turn_id, messages=[Message(role="user", content=text)]
    )


def lines(events: list[RunnerEvent]) -> list[str]:
    return [e.data["text"] for e in events if e.type == "output"]


def client(runner: RunnerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runner.url, timeout=60)


async def first_output(http: httpx.AsyncClient, turn_id: str) -> RunnerEvent:
    """Wait for the turn's first output line."""
    async with http.stream("GET", f"/v1/turns/{turn_id}/events") as response:
        async for event in runner_events(response):
            if event.type == "output":
                return event
    raise AssertionError(f"{turn_id} ended without output")


@pytest.mark.asyncio
async def test_each_turn_runs_the_command_and_streams_its_lines(
    start_runner: StartRunner, workspace: Path
) -> None:
    runner = start_runner(harness="command", command=json.dumps([*ECHO, "{message}"]))
    async with client(runner) as http:
        first = await run_turn(http, turn("cli", "cli-1", "fix the bug"))
        second = await run_turn(http, turn("cli", "cli-2", "and add a test"))

    assert lines(first)[1:] == ["you said: fix the bug", "turn cli-1", str(workspace)]
    assert lines(second)[1:] == ["you said: and add a test", "turn cli-2", str(workspace)]
    assert lines(first)[0] != lines(second)[0], "a new process for every turn"
    assert first[-1].data == {"reason": "done", "exit_code": 0}
    assert [e.seq for e in first] == list(range(1, len(first) + 1))


@pytest.mark.asyncio
async def test_the_message_can_go_to_stdin(start_runner: StartRunner) -> None:
    runner = start_runner(
        harness="command", command=json.dumps(["tr", "a-z", "A-Z"]), command_input="stdin"
    )
    async with client(runner) as http:
        events = await run_turn(http, turn("stdin", "stdin-1", "shout this\nand this"))

    assert lines(events) == ["SHOUT THIS", "AND THIS"]
    assert events[-1].data == {"reason": "done", "exit_code": 0}


@pytest.mark.asyncio
async def test_a_failing_command_ends_the_turn_with_its_exit_code(
    start_runner: StartRunner,
) -> None:
    runner = start_runner(harness="command", command='["sh", "-c", "echo oops >&2; exit 3"]')
    async with client(runner) as http:
        events = await run_turn(http, turn("fail", "fail-1", "anything"))

    assert lines(events) == ["oops"]
    assert [e.type for e in events[-2:]] == ["error", "turn_end"]
    assert "exited with 3" in events[-2].data["message"]
    assert events[-1].data == {"reason": "error", "exit_code": 3}


@pytest.mark.asyncio
async def test_cancel_stops_the_command(start_runner: StartRunner) -> None:
    runner = start_runner(harness="command", command=json.dumps(SLOW))
    async with client(runner) as http:
        await start_turn(http, turn("slow", "slow-1", "take your time"))
        pid = int((await first_output(http, "slow-1")).data["text"])
        assert (await http.post("/v1/turns/slow-1/cancel")).status_code == 202
        events = await turn_events(http, "slow-1")

    assert events[-1].data == {"reason": "cancelled"}
    assert gone(pid), "the command was stopped and reaped"


@pytest.mark.asyncio
async def test_one_turn_at_a_time_per_session(start_runner: StartRunner) -> None:
    runner = start_runner(harness="command", command=json.dumps(SLOW))
    async with client(runner) as http:
        accepted = await start_turn(http, turn("busy", "busy-1", "first"))
        again = await http.post("/v1/turns", json=turn("busy", "busy-1", "first").model_dump())
        refused = await http.post("/v1/turns", json=turn("busy", "busy-2", "second").model_dump())
        other = await start_turn(http, turn("other", "other-1", "elsewhere"))
        health = (await http.get("/healthz")).json()
        unknown = await http.get("/v1/turns/nope/events")
        await first_output(http, "busy-1")
        for turn_id in ("busy-1", "other-1"):
            await http.post(f"/v1/turns/{turn_id}/cancel")
        busy_events = await turn_events(http, "busy-1")

    assert again.status_code == 202, "re-sending a turn is acknowledged"
    assert again.json() == accepted.model_dump()
    assert refused.status_code == 409
    assert other.incarnation == accepted.incarnation
    assert health["busy_sessions"] == ["busy", "other"]
    assert unknown.status_code == 404
    assert len(lines(busy_events)) == 1, "the re-sent turn did not run twice"


@pytest.mark.asyncio
async def test_sigterm_interrupts_open_streams_and_stops_the_command(
    start_runner: StartRunner,
) -> None:
    runner = start_runner(harness="command", command=json.dumps(SLOW))
    seen: list[RunnerEvent] = []
    async with client(runner) as http:
        await start_turn(http, turn("term", "term-1", "take your time"))
        async with http.stream("GET", "/v1/turns/term-1/events") as response:
            async for event in runner_events(response):
                seen.append(event)
                runner.stop()  # SIGTERM, as the kubelet sends, and wait for the exit

    assert [e.type for e in seen] == ["output"], "the stream ended without turn_end"
    assert gone(int(seen[0].data["text"])), "the command was stopped with the runner"
