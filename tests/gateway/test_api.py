"""The HTTP API as a client meets it: access control, bad input, idempotency, cursors, end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paddock.sse import SseParser
from paddock_gateway.client import GatewayClient
from paddock_gateway.store import SessionKeys
from paddock_testing.apiserver import ApiServer
from paddock_testing.proc import gone
from paddock_testing.redis import RedisServer
from paddock_testing.runner import command_runner
from paddock_testing.wait import wait_for

pytestmark = pytest.mark.apiserver


@dataclass(frozen=True)
class World:
    """A gateway, a runner, and two Agents (alpha Ready on the runner, beta not Ready)."""

    gateway: str
    namespace: str
    admin: str
    alice: str
    """A ServiceAccount's token, allowed `connect` on alpha and on ghost (no such Agent)."""


@pytest.fixture(scope="module")
def world(
    apiserver: ApiServer, module_processes: Any, gateway_env: dict[str, str], agents_in: Any,
    token_in: Any,
) -> World:  # fmt: skip
    namespace = f"api-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", namespace)
    runner_url, _ = module_processes.runner()
    agents = agents_in(namespace)
    agents.create("alpha", runner_url)
    agents.create("beta")
    alice = token_in(namespace, "alice", "alpha", "ghost")
    gateway, _ = module_processes.gateway(gateway_env)
    return World(gateway, namespace, apiserver.token, alice)


@pytest_asyncio.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=world.gateway, timeout=30) as client:
        yield client


def sessions(world: World, agent: str = "alpha") -> str:
    return f"/v1/namespaces/{world.namespace}/agents/{agent}/sessions"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- access ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_service_account_allowed_on_agent_a_uses_it(
    world: World, http: httpx.AsyncClient
) -> None:
    created = await http.post(sessions(world), headers=bearer(world.alice))
    assert created.status_code == 201, created.text
    session = created.json()
    assert (session["agent"], session["state"]) == ("alpha", "idle")
    client = GatewayClient([world.gateway], world.alice, world.namespace, "alpha")
    try:
        turn = await client.send(session["id"], "hi there")
        async with asyncio.timeout(60):
            async for event in client.events(session["id"]):
                if event.type == "turn_end" and event.data["turn_id"] == turn:
                    break
        got = await client.get_session(session["id"])
        assert got["turns"] == 1
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_service_account_gets_403_on_agent_b(world: World, http: httpx.AsyncClient) -> None:
    answer = await http.post(sessions(world, "beta"), headers=bearer(world.alice))
    assert answer.status_code == 403
    assert "connect" in answer.json()["detail"]
    assert "beta" in answer.json()["detail"]
    listed = await http.get(sessions(world, "beta"), headers=bearer(world.alice))
    assert listed.status_code == 403


@pytest.mark.asyncio
async def test_invalid_token_gets_401(world: World, http: httpx.AsyncClient) -> None:
    answer = await http.post(sessions(world), headers=bearer("not-a-real-token"))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert (await http.get(sessions(world))).status_code == 401


@pytest.mark.asyncio
async def test_allowed_but_no_such_agent_gets_404(world: World, http: httpx.AsyncClient) -> None:
    answer = await http.post(sessions(world, "ghost"), headers=bearer(world.alice))
    assert answer.status_code == 404
    assert "ghost" in answer.json()["detail"]


# --- bad input ---------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def session_url(world: World, http: httpx.AsyncClient) -> str:
    created = await http.post(sessions(world), headers=bearer(world.admin))
    return f"{sessions(world)}/{created.json()['id']}"


@pytest.mark.asyncio
async def test_bad_input_gets_a_clear_4xx(
    world: World, http: httpx.AsyncClient, session_url: str
) -> None:
    auth = bearer(world.admin)
    unknown = await http.get(f"{sessions(world)}/{'0' * 32}", headers=auth)
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["detail"]

    oversize = {"id": "m1", "content": "x" * 70_000}
    answer = await http.post(f"{session_url}/messages", json=oversize, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "content"]

    huge = await http.post(f"{session_url}/messages", content=b"{" * (2 << 20), headers=auth)
    assert huge.status_code == 413

    malformed = await http.post(
        f"{session_url}/messages",
        content=b'{"id": "m1", "content": ',
        headers={**auth, "content-type": "application/json"},
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"

    bad_id = await http.post(
        f"{session_url}/messages", json={"id": "no spaces", "content": "hi"}, headers=auth
    )
    assert bad_id.status_code == 422

    for cursor in ("yesterday", "1-2-3", "99999999999999-0"):
        answer = await http.get(f"{session_url}/events", params={"after": cursor}, headers=auth)
        assert answer.status_code == 400, cursor
        assert "cursor" in answer.json()["detail"]


@pytest.mark.asyncio
async def test_a_repeated_message_id_is_not_run_twice(
    world: World, http: httpx.AsyncClient, session_url: str
) -> None:
    auth = bearer(world.admin)
    message = {"id": "same-id", "content": "say once"}
    first = await http.post(f"{session_url}/messages", json=message, headers=auth)
    again = await http.post(f"{session_url}/messages", json=message, headers=auth)
    assert (first.status_code, first.json()["duplicate"]) == (202, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    other = await http.post(
        f"{session_url}/messages", json={"id": "same-id", "content": "else"}, headers=auth
    )
    assert other.status_code == 409
    events = await read_until(http, session_url, auth, "turn_end")
    assert [e["type"] for e in events].count("user_message") == 1
    assert [e["type"] for e in events].count("turn_start") == 1


@pytest.mark.asyncio
async def test_the_same_message_id_in_two_sessions_runs_in_both(
    world: World, http: httpx.AsyncClient
) -> None:
    auth = bearer(world.admin)
    urls = []
    for text in ("first session", "second session"):
        created = await http.post(sessions(world), headers=auth)
        url = f"{sessions(world)}/{created.json()['id']}"
        message = {"id": "m1", "content": text}
        assert (await http.post(f"{url}/messages", json=message, headers=auth)).status_code == 202
        urls.append(url)
    for url, text in zip(urls, ("first session", "second session"), strict=True):
        events = await read_until(http, url, auth, "turn_end", data=True)
        assert text in [e["data"].get("data", {}).get("text") for e in events]


@pytest.mark.asyncio
async def test_delete_ends_open_streams_and_the_session(
    world: World, http: httpx.AsyncClient, session_url: str
) -> None:
    auth = bearer(world.admin)
    listed = (await http.get(sessions(world), headers=auth)).json()["items"]
    assert session_url.rsplit("/", 1)[1] in [s["id"] for s in listed]
    async with http.stream("GET", f"{session_url}/events", headers=auth) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        deleted = await http.delete(session_url, headers=auth)
        assert deleted.status_code == 204
        async with asyncio.timeout(30):
            kinds = [e.event async for e in sse_events(stream)]
    assert kinds == ["session_created", "end"]
    assert (await http.get(session_url, headers=auth)).status_code == 404


# A command-line harness that prints its pid, then works without a word (exec: the pid is sleep's).
SILENT_WORK = ["sh", "-c", "echo $$; exec sleep 300"]


@pytest.mark.asyncio
async def test_delete_stops_the_running_turn_on_the_runner(
    world: World, http: httpx.AsyncClient, agents_in: Any, tmp_path: Path
) -> None:
    runner = command_runner(SILENT_WORK, tmp_path)
    runner.start()
    try:
        agents_in(world.namespace).create("silent", runner.url)
        auth = bearer(world.admin)
        created = await http.post(sessions(world, "silent"), headers=auth)
        url = f"{sessions(world, 'silent')}/{created.json()['id']}"
        message = {"id": "m1", "content": "work quietly"}
        assert (await http.post(f"{url}/messages", json=message, headers=auth)).status_code == 202
        events = await read_until(http, url, auth, "output", data=True)
        pid = int(events[-1]["data"]["data"]["text"])

        assert (await http.delete(url, headers=auth)).status_code == 204

        def stopped() -> bool:
            busy = httpx.get(f"{runner.url}/healthz").json()["busy_sessions"]
            return not busy and gone(pid)

        # The command would have run for five minutes: nothing of it is left.
        wait_for(stopped, "the deleted session's turn to stop on the runner", timeout=15)
    finally:
        runner.stop()


@pytest.mark.asyncio
async def test_cursor_trimmed_away_gets_reset(
    world: World, http: httpx.AsyncClient, session_url: str, redis_server: RedisServer
) -> None:
    auth = bearer(world.admin)
    for i in range(3):
        message = {"id": f"m{i}", "content": f"number {i}"}
        assert (await http.post(f"{session_url}/messages", json=message, headers=auth)).is_success
    events = await read_until(http, session_url, auth, "turn_end", count=3)
    cursor = events[2]["id"]
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        session_id = session_url.rsplit("/", 1)[1]
        await redis.xtrim(SessionKeys(session_id).events, maxlen=4, approximate=False)
    finally:
        await redis.aclose()
    got = []
    async with http.stream(
        "GET", f"{session_url}/events", headers={**auth, "Last-Event-ID": cursor}
    ) as stream:
        async with asyncio.timeout(30):
            async for event in sse_events(stream):
                got.append(event)
                if len(got) == 5:
                    break
    assert got[0].event == "reset"
    assert got[0].id is None
    assert json.loads(got[0].data)["data"]["oldest"] == events[-4]["id"]
    assert [e.id for e in got[1:]] == [e["id"] for e in events[-4:]]


# --- helpers -----------------------------------------------------------------------------------


async def sse_events(stream: httpx.Response) -> AsyncIterator[Any]:
    parser = SseParser()
    async for chunk in stream.aiter_raw():
        for event in parser.feed(chunk):
            yield event
            if event.event == "end":
                return


async def read_until(
    http: httpx.AsyncClient, url: str, auth: dict[str, str], kind: str, *, count: int = 1,
    data: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Events from the start until the count-th of `kind`, as {id, type(, data)} dicts."""
    seen: list[dict[str, Any]] = []
    async with http.stream("GET", f"{url}/events", headers=auth) as stream, asyncio.timeout(60):
        async for event in sse_events(stream):
            seen.append({"id": event.id, "type": event.event})
            if data:
                seen[-1]["data"] = json.loads(event.data)
            if sum(e["type"] == kind for e in seen) == count:
                return seen
    raise AssertionError(f"stream ended before {count} {kind}")


# --- the CLI -----------------------------------------------------------------------------------


def paddock_chat(world: World, tmp_path: Path, agent: str, lines: str) -> Any:
    """Run `paddock chat` as a user would, with `lines` as its input."""
    token = tmp_path / "token"
    token.write_text(world.alice)
    return subprocess.run(
        [
            sys.executable, "-m", "paddock.cli", "chat", agent, "-n", world.namespace,
            "--gateway", world.gateway, "--token-file", str(token),
        ],
        input=lines, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_paddock_chat_opens_a_session_and_streams_the_turn(world: World, tmp_path: Path) -> None:
    result = paddock_chat(world, tmp_path, "alpha", "hello from a terminal\nemit 3\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[session ")
    assert lines[1:] == [
        "history 1",
        "hello from a terminal",
        "assistant: done 0",
        "[turn done]",
        "history 3",
        "line 1",
        "line 2",
        "line 3",
        "assistant: done 3",
        "[turn done]",
    ]


def test_paddock_chat_refuses_a_forbidden_agent_clearly(world: World, tmp_path: Path) -> None:
    result = paddock_chat(world, tmp_path, "beta", "")
    assert result.returncode == 1
    assert "403" in result.stderr
    assert "may not" in result.stderr
