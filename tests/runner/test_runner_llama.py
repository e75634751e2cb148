"""The runner and its coding agent against a real llama-server serving generated tiny models."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from paddock.modelserver import ModelServer
from paddock.protocol import Message, RunnerEvent, TurnRequest
from paddock_testing.llamaserver import LlamaServer
from paddock_testing.modeltap import ModelTap
from paddock_testing.runner import RunnerProcess, run_turn, start_turn, turn_events

pytestmark = pytest.mark.integration

StartRunner = Callable[..., RunnerProcess]

# Greedy sampling, short replies: the tiny models write gibberish, quickly.
AGENT = {"temperature": "0", "max_tokens": "48"}


def user(text: str) -> Message:
    return Message(role="user", content=text)


def history(events: list[RunnerEvent]) -> list[Message]:
    """The messages a turn added to the session, as the gateway keeps them."""
    return [Message.model_validate(e.data) for e in events if e.type == "message"]


def of_type(events: list[RunnerEvent], kind: str) -> list[RunnerEvent]:
    return [e for e in events if e.type == kind]


def client(runner: RunnerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runner.url, timeout=120)


@pytest.mark.asyncio
async def test_a_turn_streams_the_models_tokens(
    llama_server: LlamaServer, start_runner: StartRunner
) -> None:
    runner = start_runner(model_url=llama_server.model_url, **AGENT)
    request = TurnRequest(
        session_id="stream", turn_id="stream-1", messages=[user("Say hello.")], model="tiny-a"
    )
    async with client(runner) as http:
        health = (await http.get("/healthz")).json()
        events = await run_turn(http, request)

    tokens = [e.data["text"] for e in of_type(events, "token")]
    (reply,) = of_type(events, "message")
    assert len(tokens) > 1, "the reply arrives token by token"
    assert "".join(tokens) == reply.data["content"]
    assert reply.data["role"] == "assistant"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.incarnation for e in events} == {health["incarnation"]}
    assert events[-1].type == "turn_end"
    assert events[-1].data == {"reason": "done"}


@pytest.mark.asyncio
async def test_a_constrained_tool_call_runs_ls_and_the_result_goes_back_to_the_model(
    model_tap: ModelTap, start_runner: StartRunner, workspace: Path
) -> None:
    (workspace / "alpha.txt").write_text("alpha\n")
    (workspace / "src").mkdir()
    (workspace / "src" / "main.py").write_text("print('hi')\n")
    # The first step must call ls; the second (and last) may not call tools: it answers.
    runner = start_runner(
        model_url=model_tap.model_url,
        tool_mode="constrained",
        tool_choice="ls",
        max_steps="2",
        **AGENT,
    )
    request = TurnRequest(
        session_id="tools", turn_id="tools-1", messages=[user("Which files?")], model="tiny-a"
    )
    async with client(runner) as http:
        events = await run_turn(http, request)

    (call,) = of_type(events, "tool_call")
    (result,) = of_type(events, "tool_result")
    assert call.data["name"] == "ls"
    assert result.data["id"] == call.data["id"]
    assert result.data["output"].splitlines() == ["alpha.txt", "src/", "src/main.py"]

    # What the model server received: the schema that forced the call, then the ls output.
    first, second = model_tap.chat_requests
    schema = first["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["tool"] == {"const": "ls"}
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": call.data["id"], "content": result.data["output"]}
    ]
    # The model's answer to that streamed back and closed the turn.
    answer = history(events)[-1]
    after_result = events[events.index(result) :]
    assert answer.role == "assistant"
    assert answer.content
    assert "".join(e.data["text"] for e in of_type(after_result, "token")) == answer.content
    assert [m.role for m in history(events)] == ["assistant", "tool", "assistant"]
    assert events[-1].data == {"reason": "done"}


@pytest.mark.asyncio
async def test_models_swap_through_the_router_while_the_session_stays_open(
    llama_server: LlamaServer, model_tap: ModelTap, start_runner: StartRunner
) -> None:
    async with httpx.AsyncClient(base_url=llama_server.url, timeout=120) as control:
        models = ModelServer(control)
        await models.swap("tiny-a")
        server_pid = llama_server.pid
        # No model configured: the runner uses whatever the server has loaded.
        runner = start_runner(model_url=model_tap.model_url, **AGENT)
        async with client(runner) as http:
            incarnation = (await http.get("/healthz")).json()["incarnation"]
            messages = [user("First question.")]
            first = await run_turn(
                http, TurnRequest(session_id="swap", turn_id="swap-1", messages=messages)
            )
            messages += [*history(first), user("Second question.")]

            await models.swap("tiny-b")

            second = await run_turn(
                http, TurnRequest(session_id="swap", turn_id="swap-2", messages=messages)
            )
            assert (await http.get("/healthz")).json()["incarnation"] == incarnation
        states = {m.id: m.status for m in await models.models()}

    assert first[-1].data == {"reason": "done"}
    assert second[-1].data == {"reason": "done"}
    assert of_type(second, "token"), "the second model answered"
    assert [r["model"] for r in model_tap.chat_requests] == ["tiny-a", "tiny-b"]
    assert states == {"tiny-a": "unloaded", "tiny-b": "loaded"}
    assert llama_server.pid == server_pid
    os.kill(server_pid, 0)  # the same router process, still running: no restart


@pytest.mark.asyncio
async def test_turns_that_name_another_model_switch_it_through_the_router(
    llama_server: LlamaServer, start_runner: StartRunner
) -> None:
    runner = start_runner(model_url=llama_server.model_url, **{**AGENT, "max_tokens": "4"})
    server_pid = llama_server.pid
    models = ["tiny-a", "tiny-b"] * 4
    async with client(runner) as http:
        ends = [
            (
                await run_turn(
                    http,
                    TurnRequest(
                        session_id="alt", turn_id=f"alt-{i}", messages=[user("Hi.")], model=model
                    ),
                )
            )[-1]
            for i, model in enumerate(models)
        ]
    async with httpx.AsyncClient(base_url=llama_server.url, timeout=60) as control:
        states = {m.id: m.status for m in await ModelServer(control).models()}

    assert [e.data for e in ends] == [{"reason": "done"}] * len(models)
    assert states == {"tiny-a": "unloaded", "tiny-b": "loaded"}
    assert llama_server.pid == server_pid
    os.kill(server_pid, 0)


@pytest.mark.asyncio
async def test_a_killed_runner_restarts_and_resumes_from_the_resent_history(
    model_tap: ModelTap, start_runner: StartRunner
) -> None:
    # Long replies, so the second turn is still streaming when the runner dies.
    long_replies = {**AGENT, "max_tokens": "600"}
    runner = start_runner(model_url=model_tap.model_url, model="tiny-a", **long_replies)
    first_request = TurnRequest(session_id="crash", turn_id="crash-1", messages=[user("Hello.")])
    async with client(runner) as http:
        before = (await http.get("/healthz")).json()["incarnation"]
        first = await run_turn(http, first_request)
        messages = [*first_request.messages, *history(first), user("Go on.")]
        second_request = TurnRequest(session_id="crash", turn_id="crash-2", messages=messages)
        await start_turn(http, second_request)
        async with http.stream("GET", "/v1/turns/crash-2/events") as stream:
            async for line in stream.aiter_lines():
                if '"type":"token"' in line:
                    break  # the model is talking: now the runner dies
        runner.kill()

        after = runner.start().incarnation
        lost = await http.get("/v1/turns/crash-2/events")
        # The gateway re-sends the interrupted turn with the session's history.
        accepted = await start_turn(http, second_request)
        resumed = await turn_events(http, "crash-2")

    assert after != before
    assert lost.status_code == 404
    assert accepted.incarnation == after
    assert {e.incarnation for e in resumed} == {after}
    assert [e.seq for e in resumed] == list(range(1, len(resumed) + 1))
    assert resumed[-1].data == {"reason": "done"}
    # The model saw the whole history, the first turn's answer included.
    last_request = model_tap.chat_requests[-1]["messages"]
    assert [m["role"] for m in last_request] == ["system", "user", "assistant", "user"]
    assert last_request[2]["content"] == history(first)[0].content


@pytest.mark.asyncio
async def test_a_session_longer_than_the_models_context_still_gets_its_answer(
    model_tap: ModelTap, start_runner: StartRunner
) -> None:
    runner = start_runner(model_url=model_tap.model_url, **AGENT)
    earlier: list[Message] = []
    for i in range(40):  # ~25,000 characters: six times the tiny model's 4,096 (byte) tokens
        earlier += [
            user(f"question {i}: " + "words " * 100),
            Message(role="assistant", content="ok"),
        ]
    question = user("And now?")
    request = TurnRequest(
        session_id="long", turn_id="long-1", messages=[*earlier, question], model="tiny-a"
    )
    async with client(runner) as http:
        events = await run_turn(http, request)

    assert events[-1].data == {"reason": "done"}, events[-3:]
    (reply,) = of_type(events, "message")
    assert reply.data["role"] == "assistant"
    (notice,) = of_type(events, "output")
    assert "context is full" in notice.data["text"]
    # The server refused the whole history; what it answered kept the system message, the
    # newest exchanges and the question, and was smaller.
    refused, answered = model_tap.chat_requests[0], model_tap.chat_requests[-1]
    assert len(refused["messages"]) == len(earlier) + 2
    assert 2 < len(answered["messages"]) < len(refused["messages"])
    assert answered["messages"][0]["role"] == "system"
    assert answered["messages"][-1] == question.model_dump(exclude_none=True)
    assert answered["messages"][1:-1] == refused["messages"][-len(answered["messages"]) + 1 : -1]
