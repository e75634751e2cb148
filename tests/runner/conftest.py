"""Fixtures for the runner's tests: runner processes, and a tap on what they send the model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from paddock_testing.llamaserver import LlamaServer
from paddock_testing.modeltap import ModelTap
from paddock_testing.runner import RunnerProcess


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace directory."""
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def start_runner(tmp_path: Path, workspace: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """Start `paddock runner`s (PADDOCK_RUNNER_<KEY>=value per keyword); stop them after."""
    runners: list[RunnerProcess] = []

    def start(**settings: str) -> RunnerProcess:
        env = {"PADDOCK_RUNNER_WORKSPACE": str(workspace)}
        env |= {f"PADDOCK_RUNNER_{key.upper()}": value for key, value in settings.items()}
        runner = RunnerProcess(env, tmp_path / f"runner-{len(runners)}")
        runners.append(runner)
        runner.start()
        return runner

    yield start
    for runner in runners:
        runner.stop()


@pytest_asyncio.fixture
async def model_tap(llama_server: LlamaServer) -> AsyncIterator[ModelTap]:
    """A ModelTap in front of the shared llama-server."""
    async with ModelTap(llama_server.url) as tap:
        yield tap
