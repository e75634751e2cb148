"""The reference coding agent: ask the model, run the tools it asks for, repeat until it answers.

Each step is one streaming chat request to the Pod's model server. Every message added to the
history (the assistant's replies, the tools' results) goes out as a `message` event, so the
gateway's copy of the history is what the next turn re-sends; the agent itself keeps nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from paddock.modelserver import ModelServer, ModelServerError
from paddock.protocol import Message, ToolCall, TurnRequest
from paddock_runner.agent.chat import ContextFullError, ModelError, complete
from paddock_runner.agent.context import shorten
from paddock_runner.agent.modes import ToolMode
from paddock_runner.agent.tools import Tool, ToolError, ToolResult, Workspace
from paddock_runner.harness import Emit, HarnessError

SYSTEM_PROMPT = (
    "You are a coding agent. You work in a workspace directory, using the tools to look at "
    "files, change them and run commands. When the task is done, answer briefly with what you did."
)


@dataclass(frozen=True)
class AgentConfig:
    """How the agent talks to its model."""

    model: str | None = None
    """Fallback model, when neither the turn nor the server's one loaded model names one."""
    tool_choice: str = "auto"
    """The first step's choice: auto, required, none or a tool's name; later steps use auto."""
    max_steps: int = 16
    max_tokens: int = 2048
    temperature: float | None = None
    system_prompt: str = SYSTEM_PROMPT


class CodingAgent:
    """A Harness: runs turns as a tool loop."""

    def __init__(
        self,
        chat: httpx.AsyncClient,
        server: ModelServer,
        workspace: Workspace,
        mode: ToolMode,
        config: AgentConfig,
    ) -> None:
        self.chat = chat
        """Client of the OpenAI API: its base URL ends in /v1."""
        self.server = server
        self.workspace = workspace
        self.mode = mode
        self.config = config

    async def run_turn(self, request: TurnRequest, emit: Emit) -> dict[str, Any]:
        """Run the loop on the turn's history; the last step may not call tools."""
        model = await self._model(request)
        history = list(request.messages)
        if history[0].role != "system":
            history.insert(0, Message(role="system", content=self.config.system_prompt))
        tools = self.workspace.tools()
        choice = self.config.tool_choice
        for step in range(1, self.config.max_steps + 1):
            if step == self.config.max_steps:
                choice = "none"
            reply = await self._ask(model, history, tools, choice, emit)
            history.append(reply)
            emit("message", reply.model_dump(exclude_none=True))
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                history.append(await self._use(call, tools, emit))
            choice = "auto"
        return {}

    async def _model(self, request: TurnRequest) -> str:
        if request.model:
            return request.model
        try:
            current = await self.server.current()
        except (httpx.HTTPError, ModelServerError) as error:
            raise HarnessError(f"cannot ask the model server for its model: {error}") from error
        model = current or self.config.model
        if model is None:
            raise HarnessError("no model: the turn names none, the server has none loaded")
        return model

    async def _ask(
        self, model: str, history: list[Message], tools: list[Tool], choice: str, emit: Emit
    ) -> Message:
        """One step's request. When the model's context is full, the oldest of history goes
        (in place: the turn's later steps send the shorter one too) and the request is retried."""
        streams = self.mode.streams_text(choice)

        def on_text(text: str) -> None:
            if streams:
                emit("token", {"text": text})

        while True:
            body: dict[str, Any] = {"model": model, "max_tokens": self.config.max_tokens}
            if self.config.temperature is not None:
                body["temperature"] = self.config.temperature
            body |= self.mode.request(history, tools, choice)
            try:
                completion = await complete(self.chat, body, on_text)
            except ContextFullError as full:
                shorter = shorten(
                    history, prompt=full.prompt, context=full.context, reserve=body["max_tokens"]
                )
                if shorter is None:
                    raise HarnessError(
                        f"the turn does not fit the model's context even without the earlier "
                        f"messages ({full}): start a new session, or give the model more context"
                    ) from full
                history[:] = shorter.messages
                emit(
                    "output",
                    {
                        "text": f"paddock: {_sizes(full)}: left out {shorter.left_out} "
                        "of the oldest messages from this turn's requests"
                    },
                )
                continue
            except (httpx.HTTPError, ModelError) as error:
                raise HarnessError(f"model request failed: {error}") from error
            return self.mode.reply(completion, choice)

    async def _use(self, call: ToolCall, tools: list[Tool], emit: Emit) -> Message:
        """Run one tool call; failures are results too, so the model can read them and retry."""
        name, arguments = call.function.name, call.function.arguments
        emit("tool_call", {"id": call.id, "name": name, "arguments": arguments})
        result = await _run(tools, name, arguments)
        event: dict[str, Any] = {"id": call.id, "output": result.output}
        if result.exit_code is not None:
            event["exit_code"] = result.exit_code
        emit("tool_result", event)
        message = Message(role="tool", tool_call_id=call.id, content=result.output)
        emit("message", message.model_dump(exclude_none=True))
        return message


def _sizes(full: ContextFullError) -> str:
    if full.prompt and full.context:
        return f"the model's context is full ({full.prompt} tokens asked, {full.context} fit)"
    return "the model's context is full"


async def _run(tools: list[Tool], name: str, arguments: str) -> ToolResult:
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        return ToolResult(f"error: no tool named {name!r}", exit_code=1)
    try:
        args = json.loads(arguments or "{}")
        if not isinstance(args, dict):
            raise ToolError("arguments must be a JSON object")
        return await tool.run(args)
    except (ToolError, json.JSONDecodeError, OSError) as error:
        return ToolResult(f"error: {error}", exit_code=1)
