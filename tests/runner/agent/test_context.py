"""Fitting a long session into the model's context (pure logic; with a real server: see
test_runner_llama)."""

from __future__ import annotations

import json

import pytest

from paddock.protocol import Message, ToolCall, ToolCallFunction
from paddock_runner.agent.chat import context_full
from paddock_runner.agent.context import LEFT_OUT, shorten

pytestmark = pytest.mark.unit


def user(text: str) -> Message:
    return Message(role="user", content=text)


def calls(call_id: str) -> Message:
    call = ToolCall(id=call_id, function=ToolCallFunction(name="ls", arguments="{}"))
    return Message(role="assistant", content="", tool_calls=[call])


def tool(call_id: str, output: str) -> Message:
    return Message(role="tool", tool_call_id=call_id, content=output)


SYSTEM = Message(role="system", content="You are a coding agent.")


def session(exchanges: int) -> list[Message]:
    """A system message, earlier exchanges with tool calls, and this turn's question."""
    history = [SYSTEM]
    for i in range(exchanges):
        history += [
            user(f"question {i} " + "x" * 400),
            calls(f"c{i}"),
            tool(f"c{i}", "y" * 400),
            Message(role="assistant", content=f"answer {i}"),
        ]
    return [*history, user("this turn's question")]


def test_the_oldest_exchanges_go_whole_and_the_system_message_and_question_stay() -> None:
    history = session(10)
    # The server counted 2000 tokens in a 1000-token context: about half of it has to go.
    shorter = shorten(history, prompt=2000, context=1000, reserve=100)
    assert shorter is not None
    kept = shorter.messages
    assert kept[0] == SYSTEM
    assert kept[-1] == history[-1]
    assert len(kept) < len(history) // 2 + 2
    assert shorter.left_out == len(history) - len(kept)
    # What stays is the newest exchanges, each whole, in order: no tool reply without its call.
    assert kept[1:] == history[len(history) - len(kept) + 1 :]
    assert kept[1].role == "user"
    ids = {c.id for m in kept for c in m.tool_calls or []}
    assert all(m.tool_call_id in ids for m in kept if m.role == "tool")


def test_a_small_overflow_costs_only_the_oldest_exchange() -> None:
    history = session(10)
    shorter = shorten(history, prompt=1010, context=1000, reserve=0)
    assert shorter is not None
    assert shorter.messages == [SYSTEM, *history[5:]]
    assert shorter.left_out == 4


def test_within_one_turn_the_oldest_tool_outputs_are_left_out_but_their_messages_stay() -> None:
    history = [SYSTEM, user("go"), calls("a"), tool("a", "A" * 5000), calls("b"), tool("b", "B")]
    shorter = shorten(history, prompt=3000, context=2000, reserve=0)
    assert shorter is not None
    assert [m.role for m in shorter.messages] == [m.role for m in history]
    assert shorter.messages[3].content == LEFT_OUT
    assert shorter.messages[5].content == "B"  # enough went already
    assert shorter.left_out == 1


def test_nothing_more_to_leave_out() -> None:
    assert shorten([SYSTEM, user("q" * 10_000)], prompt=9000, context=4000, reserve=0) is None
    already = [SYSTEM, user("go"), calls("a"), tool("a", LEFT_OUT)]
    assert shorten(already, prompt=9000, context=4000, reserve=0) is None


def test_without_token_counts_about_half_goes() -> None:
    history = session(10)
    shorter = shorten(history, prompt=None, context=None, reserve=0)
    assert shorter is not None
    assert 20 <= shorter.left_out <= 24


def test_llama_server_and_vllm_context_errors_are_recognised() -> None:
    llama = {
        "error": {
            "code": 400,
            "message": "request (652 tokens) exceeds the available context size (256 tokens)",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 652,
            "n_ctx": 256,
        }
    }
    full = context_full(400, json.dumps(llama))
    assert full is not None
    assert (full.prompt, full.context) == (652, 256)
    vllm = {
        "object": "error",
        "type": "BadRequestError",
        "code": 400,
        "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length.",
    }
    full = context_full(400, json.dumps(vllm))
    assert full is not None
    assert (full.prompt, full.context) == (4000, 4096)
    other = {"error": {"code": 400, "message": "bad JSON", "type": "invalid_request_error"}}
    assert context_full(400, json.dumps(other)) is None
    assert context_full(500, json.dumps(llama)) is None
    assert context_full(400, "not json") is None
