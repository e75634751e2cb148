"""A streaming call to an OpenAI-compatible `/chat/completions`, reassembled into one reply."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from paddock.protocol import ToolCall, ToolCallFunction


class ModelError(RuntimeError):
    """The model server answered with an error, or not in the chat API's shape."""


class ContextFullError(ModelError):
    """The request does not fit the model's context window; sizes in tokens, where told."""

    def __init__(self, message: str, *, prompt: int | None, context: int | None) -> None:
        super().__init__(message)
        self.prompt = prompt
        self.context = context


# vLLM (and OpenAI): "This model's maximum context length is 4096 tokens. However, you requested
# 5000 tokens (4000 in the messages, 1000 in the completion)" or "... your request has 5000 input
# tokens"; llama-server answers with type exceed_context_size_error, n_prompt_tokens and n_ctx.
_MAX_CONTEXT = re.compile(r"maximum context length is (\d+)")
_PROMPT = re.compile(r"(\d+) in the messages|has (\d+) input tokens")


def context_full(status: int, text: str) -> ContextFullError | None:
    """The error a model server's 400 answer means, when it says the context is full."""
    if status != 400:
        return None
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return None
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    message = str(error.get("message", ""))
    if error.get("type") == "exceed_context_size_error":
        return ContextFullError(
            message, prompt=error.get("n_prompt_tokens"), context=error.get("n_ctx")
        )
    if context := _MAX_CONTEXT.search(message):
        prompt = _PROMPT.search(message)
        tokens = int(next(g for g in prompt.groups() if g)) if prompt else None
        return ContextFullError(message, prompt=tokens, context=int(context.group(1)))
    return None


@dataclass
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Completion:
    """The model's whole reply to one request."""

    content: str
    tool_calls: list[ToolCall]
    finish_reason: str | None


async def complete(
    client: httpx.AsyncClient, body: dict[str, Any], on_text: Callable[[str], None]
) -> Completion:
    """POST `body` with streaming on; `on_text` gets each piece of content as it arrives."""
    content: list[str] = []
    calls: dict[int, _CallParts] = {}
    finish_reason: str | None = None
    async with client.stream("POST", "chat/completions", json={**body, "stream": True}) as response:
        if response.is_error:
            await response.aread()
            if full := context_full(response.status_code, response.text):
                raise full
            raise ModelError(f"HTTP {response.status_code} from the model: {response.text[:500]}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise ModelError(f"the model failed mid-reply: {chunk['error']}")
            for choice in chunk.get("choices", []):
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice.get("delta") or {}
                if text := delta.get("content"):
                    content.append(text)
                    on_text(text)
                for part in delta.get("tool_calls") or []:
                    _add_call_part(calls.setdefault(part.get("index", 0), _CallParts()), part)
    tool_calls = [
        ToolCall(
            id=parts.id or f"call_{index}",
            function=ToolCallFunction(name=parts.name, arguments="".join(parts.arguments) or "{}"),
        )
        for index, parts in sorted(calls.items())
    ]
    return Completion("".join(content), tool_calls, finish_reason)


def _add_call_part(parts: _CallParts, delta: dict[str, Any]) -> None:
    # A tool call streams as pieces: the id and name once, the arguments' JSON text in chunks.
    parts.id = delta.get("id") or parts.id
    function = delta.get("function") or {}
    parts.name = function.get("name") or parts.name
    if arguments := function.get("arguments"):
        parts.arguments.append(arguments)
