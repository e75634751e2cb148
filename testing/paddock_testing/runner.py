"""The runner as a real process on loopback, and a small client of its protocol (tests, benches)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from paddock.protocol import RunnerEvent, RunnerHealth, TurnAccepted, TurnRequest
from paddock.sse import SseParser
from paddock_testing.processes import HttpProcess, ProcessError


class RunnerError(ProcessError):
    """The runner did not start, or a turn did not go as the protocol says."""


class RunnerProcess(HttpProcess):
    """`paddock runner`, configured by PADDOCK_RUNNER_* variables in `env`; restartable."""

    name = "runner"

    def __init__(self, env: dict[str, str], workdir: Path, start_timeout_s: float = 60.0) -> None:
        super().__init__(workdir, start_timeout_s)
        self.env = env

    def start(self) -> RunnerHealth:
        """Start the process on its port and wait until /healthz answers; return that answer."""
        port = {"PADDOCK_RUNNER_HOST": "127.0.0.1", "PADDOCK_RUNNER_PORT": str(self.port)}
        self.spawn([sys.executable, "-m", "paddock.cli", "runner"], {**self.env, **port})
        return RunnerHealth.model_validate_json(self.wait_healthy("/healthz").content)


def command_runner(command: list[str], tmp_path: Path) -> RunnerProcess:
    """A runner whose harness is `command` ({message} is the turn's message), with a fresh
    workspace under tmp_path; not started."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    env = {
        "PADDOCK_RUNNER_HARNESS": "command",
        "PADDOCK_RUNNER_WORKSPACE": str(workspace),
        "PADDOCK_RUNNER_COMMAND": json.dumps(command),
    }
    return RunnerProcess(env, tmp_path / "runner")


async def start_turn(client: httpx.AsyncClient, request: TurnRequest) -> TurnAccepted:
    """POST the turn; raise unless the runner accepted it."""
    response = await client.post("/v1/turns", json=request.model_dump(mode="json"))
    if response.status_code != 202:
        raise RunnerError(f"turn refused: HTTP {response.status_code}: {response.text}")
    return TurnAccepted.model_validate_json(response.content)


async def turn_events(client: httpx.AsyncClient, turn_id: str, after: int = 0) -> list[RunnerEvent]:
    """The turn's events after `after`, read until turn_end."""
    events: list[RunnerEvent] = []
    url = f"/v1/turns/{turn_id}/events"
    async with client.stream("GET", url, params={"after": after}) as response:
        if response.status_code != 200:
            await response.aread()
            raise RunnerError(f"events refused: HTTP {response.status_code}: {response.text}")
        async for event in runner_events(response):
            events.append(event)
    if not events or events[-1].type != "turn_end":
        raise RunnerError(f"the event stream of {turn_id} ended without turn_end")
    return events


async def runner_events(response: httpx.Response) -> AsyncIterator[RunnerEvent]:
    """The RunnerEvents of an open event stream, as they arrive."""
    parser = SseParser()
    async for chunk in response.aiter_raw():
        for message in parser.feed(chunk):
            yield RunnerEvent.model_validate_json(message.data)


async def run_turn(client: httpx.AsyncClient, request: TurnRequest) -> list[RunnerEvent]:
    """Start the turn and read all its events."""
    await start_turn(client, request)
    return await turn_events(client, request.turn_id)
