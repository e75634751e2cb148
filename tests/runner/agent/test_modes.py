"""Native and constrained tool calls: what each asks the model, how replies become messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paddock.protocol import Message, ToolCall, ToolCallFunction
from paddock_runner.agent.chat import Completion
from paddock_runner.agent.modes import ConstrainedTools, NativeTools
from paddock_runner.agent.tools import Tool, Workspace

pytestmark = pytest.mark.unit

HISTORY = [Message(role="system", content="be brief"), Message(role="user", content="hi")]


@pytest.fixture
def tools(tmp_path: Path) -> list[Tool]:
    return Workspace(tmp_path, shell_timeout_s=1, output_limit=1000).tools()


def schema(body: dict[str, object]) -> dict[str, object]:
    return body["response_format"]["json_schema"]["schema"]  # type: ignore[index, no-any-return]


def test_native_mode_forces_a_named_tool_by_offering_only_it(tools: list[Tool]) -> None:
    body = NativeTools().request(HISTORY, tools, "ls")

    assert [t["function"]["name"] for t in body["tools"]] == ["ls"]
    assert body["tool_choice"] == "required"
    assert "tools" not in NativeTools().request(HISTORY, tools, "none")
    assert len(NativeTools().request(HISTORY, tools, "auto")["tools"]) == 4


def test_constrained_mode_allows_only_the_chosen_shapes(tools: list[Tool]) -> None:
    mode = ConstrainedTools()

    forced = schema(mode.request(HISTORY, tools, "ls"))
    free = schema(mode.request(HISTORY, tools, "auto"))
    plain = mode.request(HISTORY, tools, "none")

    assert forced == {
        "type": "object",
        "properties": {"tool": {"const": "ls"}},
        "required": ["tool"],
        "additionalProperties": False,
    }
    consts = [s["properties"].get("tool", {}).get("const") for s in free["anyOf"]]  # type: ignore[union-attr, attr-defined]
    assert consts == ["shell", "read", "write", "ls", None]
    assert "response_format" not in plain, "an answer is plain text, so it streams"
    assert mode.streams_text("none")
    assert not mode.streams_text("auto")


def test_constrained_mode_describes_the_tools_in_the_leading_system_message(
    tools: list[Tool],
) -> None:
    messages = ConstrainedTools().request(HISTORY, tools, "auto")["messages"]

    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("be brief\n\nReply with exactly one JSON object.")
    assert "- write (path, content):" in messages[0]["content"]


def test_constrained_replies_become_tool_calls_or_answers() -> None:
    mode = ConstrainedTools()

    call = mode.reply(Completion('{"tool": "read", "path": "a.txt"}', [], "stop"), "auto")
    answer = mode.reply(Completion('{"answer": "done"}', [], "stop"), "auto")
    text = mode.reply(Completion('{"tool": "ls"}', [], "stop"), "none")

    assert call.tool_calls is not None
    assert call.tool_calls[0].function.name == "read"
    assert json.loads(call.tool_calls[0].function.arguments) == {"path": "a.txt"}
    assert answer == Message(role="assistant", content="done")
    assert text == Message(role="assistant", content='{"tool": "ls"}'), "none means plain text"


def test_native_replies_keep_the_apis_tool_calls() -> None:
    calls = [ToolCall(id="c1", function=ToolCallFunction(name="ls", arguments="{}"))]

    message = NativeTools().reply(Completion("", calls, "tool_calls"), "auto")

    assert message == Message(role="assistant", tool_calls=calls)
