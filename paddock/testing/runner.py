"""The runner as a real process on loopback, and a small client of its protocol (tests, benches)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Self

import httpx

from paddock.protocol import RunnerEvent, RunnerHealth, TurnAccepted, TurnRequest, read_sse_events
from paddock.testing.apiserver import free_port


class RunnerError(RuntimeError):
    """The runner did not start, or a turn did not go as the protocol says."""


class RunnerProcess:
    """`paddock runner`, configured by PADDOCK_RUNNER_* variables in `env`."""

    def __init__(self, env: dict[str, str], workdir: Path, start_timeout_s: float = 60.0) -> None:
        self.env = env
        self.workdir = workdir
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """Where the runner's output goes (appended to across restarts)."""
        return self.workdir / "runner.log"

    @property
    def pid(self) -> int:
        """The runner's process id."""
        if self._process is None:
            raise RunnerError("the runner is not running")
        return self._process.pid

    def start(self) -> RunnerHealth:
        """Start the process and wait until /healthz answers; return that answer."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        env = {
            **os.environ,
            **self.env,
            "PADDOCK_RUNNER_HOST": "127.0.0.1",
            "PADDOCK_RUNNER_PORT": str(self.port),
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", "paddock.cli", "runner"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RunnerError(
                    f"the runner exited with {self._process.returncode}; see {self.log_file}"
                )
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2)
                if response.status_code == 200:
                    return RunnerHealth.model_validate_json(response.content)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RunnerError(f"the runner was not healthy in {self.start_timeout_s}s")

    def kill(self) -> None:
        """SIGKILL the runner, as an OOM kill or a node failure would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_log()

    def stop(self) -> None:
        """SIGTERM the runner and wait for it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


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
        async for event in read_sse_events(response.aiter_lines()):
            events.append(event)
    if not events or events[-1].type != "turn_end":
        raise RunnerError(f"the event stream of {turn_id} ended without turn_end")
    return events


async def run_turn(client: httpx.AsyncClient, request: TurnRequest) -> list[RunnerEvent]:
    """Start the turn and read all its events."""
    await start_turn(client, request)
    return await turn_events(client, request.turn_id)
