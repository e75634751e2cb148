"""How the model asks for a tool: the chat API's tool calls, or JSON-schema-constrained output.

Native is what real models use (llama-server with --jinja, vLLM with a tool-call parser): the
request lists the tools and the reply carries `tool_calls`. Constrained is an explicit choice for
models that cannot call tools (or random-weight test models): the request carries a
`response_format` JSON schema whose only valid replies are {"tool": NAME, ...arguments} or
{"answer": TEXT}, and the runner turns the first into a tool call; a step that may not call tools
asks for plain text, so the final answer streams and is never cut off mid-JSON. The history the
gateway keeps is the same in both modes: OpenAI messages with `tool_calls` and `tool` replies.

A step's `choice` is auto (tools or an answer), required (a tool), none (an answer) or one tool's
name (that tool).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Protocol

from paddock.protocol import Message, ToolCall, ToolCallFunction
from paddock_runner.agent.chat import Completion
from paddock_runner.agent.tools import Tool


class ToolMode(Protocol):
    """Turns the conversation into a request body, and the model's reply into a message."""

    def request(self, messages: list[Message], tools: list[Tool], choice: str) -> dict[str, Any]:
        """The request body's `messages` and tool-related fields for one step."""
        ...

    def streams_text(self, choice: str) -> bool:
        """Whether the reply's content, as it streams, is text for the user."""
        ...

    def reply(self, completion: Completion, choice: str) -> Message:
        """The assistant message to append to the history."""
        ...


def _wire(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


def _allowed(tools: list[Tool], choice: str) -> list[Tool]:
    if choice in ("auto", "required"):
        return tools
    return [t for t in tools if t.name == choice]


class NativeTools:
    """The chat API's own tool calling."""

    def request(self, messages: list[Message], tools: list[Tool], choice: str) -> dict[str, Any]:
        """List the allowed tools; a named tool is forced by offering only it, as `required`."""
        body: dict[str, Any] = {"messages": _wire(messages)}
        if choice != "none":
            body["tools"] = [t.openai_spec() for t in _allowed(tools, choice)]
            body["tool_choice"] = "auto" if choice == "auto" else "required"
        return body

    def streams_text(self, choice: str) -> bool:
        """Always: tool calls stream apart from the content."""
        return True

    def reply(self, completion: Completion, choice: str) -> Message:
        """The reply as the API gave it."""
        return Message(
            role="assistant",
            content=completion.content or None,
            tool_calls=completion.tool_calls or None,
        )


class ConstrainedTools:
    """Tool calls as JSON objects the model must produce, enforced by a JSON schema."""

    def request(self, messages: list[Message], tools: list[Tool], choice: str) -> dict[str, Any]:
        """Describe the allowed replies in the system message and require them by schema."""
        if choice == "none":
            return {"messages": _wire(messages)}
        allowed = _allowed(tools, choice)
        shapes = [_call_shape(t) for t in allowed]
        if choice == "auto":
            shapes.append(_ANSWER_SHAPE)
        guide = _guide(allowed, answer=choice == "auto")
        schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
        return {
            "messages": _wire(_with_system(messages, guide)),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "action", "strict": True, "schema": schema},
            },
        }

    def streams_text(self, choice: str) -> bool:
        """Only for plain-text steps: the others write JSON."""
        return choice == "none"

    def reply(self, completion: Completion, choice: str) -> Message:
        """A tool call for {"tool": ...}, the text for {"answer": ...}, else the raw reply."""
        if choice == "none":
            return Message(role="assistant", content=completion.content)
        try:
            action = json.loads(completion.content)
        except json.JSONDecodeError:
            # Not JSON after all (a server that ignores response_format): take it as text.
            return Message(role="assistant", content=completion.content)
        if isinstance(action, dict) and isinstance(action.get("tool"), str):
            name = action.pop("tool")
            call = ToolCall(
                id=f"call_{uuid.uuid4().hex[:12]}",
                function=ToolCallFunction(name=name, arguments=json.dumps(action)),
            )
            return Message(role="assistant", tool_calls=[call])
        if isinstance(action, dict) and isinstance(action.get("answer"), str):
            return Message(role="assistant", content=action["answer"])
        return Message(role="assistant", content=completion.content)


_ANSWER_SHAPE = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def _call_shape(tool: Tool) -> dict[str, Any]:
    params = tool.parameters
    return {
        "type": "object",
        "properties": {"tool": {"const": tool.name}, **params.get("properties", {})},
        "required": ["tool", *params.get("required", [])],
        "additionalProperties": False,
    }


def _with_system(messages: list[Message], text: str) -> list[Message]:
    # Appended to the leading system message: many chat templates allow no system message later.
    if messages and messages[0].role == "system":
        first = messages[0].model_copy(update={"content": f"{messages[0].content or ''}\n\n{text}"})
        return [first, *messages[1:]]
    return [Message(role="system", content=text), *messages]


def _guide(tools: list[Tool], answer: bool) -> str:
    lines = ["Reply with exactly one JSON object."]
    if tools:
        lines.append('To use a tool: {"tool": NAME, ...its arguments}. Tools:')
        for tool in tools:
            args = ", ".join(tool.parameters.get("properties", {})) or "no arguments"
            lines.append(f"- {tool.name} ({args}): {tool.description}")
    if answer:
        lines.append('To answer the user: {"answer": TEXT}.')
    return "\n".join(lines)


def tool_mode(name: str) -> ToolMode:
    """The mode the settings name."""
    return ConstrainedTools() if name == "constrained" else NativeTools()
