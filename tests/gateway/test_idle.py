"""Idle Agents: a message wakes an Agent the operator suspended for idling, never one a person
suspended; the gateway records use only of Agents with spec.lifecycle.idleAfter.

The test plays the operator: it suspends Agents and makes them Ready by writing their status.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from paddock_gateway.client import Event, GatewayClient
from paddock_testing.apiserver import ApiServer
from paddock_testing.sessions import assert_exactly_once, collect_turn
from paddock_testing.wait import wait_for, wait_until

pytestmark = pytest.mark.apiserver

TIMEOUT = 90


@dataclass(frozen=True)
class World:
    """A gateway, a runner that Agents are made Ready at, and a namespace for the Agents."""

    gateway: str
    runner: str
    agents: Any
    token: str

    def client(self, agent: str) -> GatewayClient:
        return GatewayClient([self.gateway], self.token, self.agents.namespace, agent)

    def sessions(self, agent: str) -> str:
        return f"{self.gateway}/v1/namespaces/{self.agents.namespace}/agents/{agent}/sessions"


@pytest.fixture(scope="module")
def world(
    apiserver: ApiServer, module_processes: Any, gateway_env: dict[str, str], agents_in: Any
) -> World:
    namespace = f"idle-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", namespace)
    runner, _ = module_processes.runner()
    gateway, _ = module_processes.gateway(gateway_env)
    return World(gateway, runner, agents_in(namespace), apiserver.token)


def idle_suspended(world: World, name: str, at: datetime) -> str:
    """An Agent with idleAfter that the operator suspended for idling at `at`."""
    world.agents.create(name, idle_after="10s")
    world.agents.suspend_idle(name, at)
    return name


async def post(world: World, agent: str, session: str, content: str) -> httpx.Response:
    """POST a message as a client would; the answer as it came."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {world.token}"}) as http:
        message = {"id": uuid.uuid4().hex, "content": content}
        return await http.post(f"{world.sessions(agent)}/{session}/messages", json=message)


async def written_times(world: World, name: str, count: int) -> None:
    """Wait until the Agent's status.lastActivityTime has held `count` different values."""
    seen: set[datetime] = set()

    def enough() -> bool:
        if written := world.agents.last_activity(name):
            seen.add(written)
        return len(seen) >= count

    await wait_until(enough, f"{count} writes of {name}'s lastActivityTime", 30, every=0.3)


def outputs(events: list[Event]) -> list[str]:
    """What the scripted runner echoed, without its `history <k>` lines."""
    texts = [e.data["data"]["text"] for e in events if e.type == "output"]
    return [t for t in texts if not t.startswith("history ")]


@pytest.mark.asyncio
async def test_a_message_to_an_idle_suspended_agent_wakes_it_and_runs_once_it_is_ready(
    world: World,
) -> None:
    # The operator's clock runs 30 s ahead of the gateway's: the wake must still be later.
    suspended_at = datetime.now(UTC) + timedelta(seconds=30)
    name = idle_suspended(world, "sleeper", suspended_at)
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        accepted = await post(world, name, session, "good morning")
        assert accepted.status_code == 202, accepted.text
        turn = accepted.json()["turn_id"]
        wait_for(
            lambda: (seen := world.agents.last_activity(name)) and seen > suspended_at,
            "status.lastActivityTime later than status.idleSuspendTime",
        )
        states: list[str] = []

        async def play_the_operator(event: Event) -> None:
            if event.type == "agent_waking":
                states.append((await client.get_session(session))["state"])
                world.agents.set_ready(name, world.runner)

        events = await asyncio.wait_for(
            collect_turn(client.events(session), turn, play_the_operator), TIMEOUT
        )
    finally:
        await client.aclose()
    assert_exactly_once(events)
    kinds = [e.type for e in events]
    assert kinds.index("user_message") < kinds.index("agent_waking") < kinds.index("agent_ready")
    assert kinds.index("agent_ready") < kinds.index("output")
    waking = next(e for e in events if e.type == "agent_waking")
    assert waking.data["data"] == {"reason": "the agent was suspended after being idle; waking it"}
    assert states == ["agent_waking"]
    assert "agent_restarting" not in kinds  # a wake is not a restart
    assert outputs(events) == ["good morning"]
    assert events[-1].data["data"] == {"reason": "done"}


@pytest.mark.asyncio
async def test_an_agent_woken_before_the_driver_looks_is_waking_not_restarting(
    world: World,
) -> None:
    # The message's own write woke it, and the operator cleared idleSuspendTime, before the
    # driver's first look: the session still hears of a wake.
    name = world.agents.create("early-riser", idle_after="10s")
    world.agents.woken(name, datetime.now(UTC))
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        accepted = await post(world, name, session, "up already")
        assert accepted.status_code == 202, accepted.text

        async def play_the_operator(event: Event) -> None:
            if event.type == "agent_waking":
                world.agents.set_ready(name, world.runner)

        events = await asyncio.wait_for(
            collect_turn(client.events(session), accepted.json()["turn_id"], play_the_operator),
            TIMEOUT,
        )
    finally:
        await client.aclose()
    kinds = [e.type for e in events]
    assert "agent_restarting" not in kinds, kinds
    assert kinds.index("agent_waking") < kinds.index("agent_ready") < kinds.index("output")
    assert outputs(events) == ["up already"]


@pytest.mark.asyncio
async def test_three_messages_posted_while_the_agent_wakes_run_in_order_each_once(
    world: World,
) -> None:
    name = idle_suspended(world, "dozer", datetime.now(UTC) - timedelta(minutes=1))
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        turns = [await client.send(session, f"message {i}") for i in range(3)]

        async def play_the_operator(event: Event) -> None:
            if event.type == "agent_waking":
                world.agents.set_ready(name, world.runner)

        events = await asyncio.wait_for(
            collect_turn(client.events(session), turns[-1], play_the_operator), TIMEOUT
        )
    finally:
        await client.aclose()
    assert_exactly_once(events)
    assert [e.data["turn_id"] for e in events if e.type == "turn_end"] == turns
    assert outputs(events) == ["message 0", "message 1", "message 2"]
    kinds = [e.type for e in events]
    assert (kinds.count("agent_waking"), kinds.count("agent_ready")) == (1, 1)


@pytest.mark.asyncio
async def test_an_agent_suspended_by_spec_refuses_a_message_with_409_and_queues_nothing(
    world: World, apiserver: ApiServer
) -> None:
    name = world.agents.create("paused", idle_after="10s", suspend=True)
    namespace = world.agents.namespace
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        refused = await post(world, name, session, "are you there?")
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "suspended by spec.suspend: true" in detail
        assert "a message does not resume it" in detail
        resume = ["patch", "agent", name, "-n", namespace, "--type", "merge"]
        unsuspend = '{"spec":{"suspend":false}}'
        assert f"kubectl {' '.join(resume)} -p '{unsuspend}'" in detail
        assert world.agents.last_activity(name) is None

        # The person resumes it as the answer says; the refused message never runs.
        apiserver.kubectl(*resume, "-p", unsuspend)
        world.agents.set_ready(name, world.runner)
        turn = await client.send(session, "after the resume")
        events = await asyncio.wait_for(collect_turn(client.events(session), turn), TIMEOUT)
    finally:
        await client.aclose()
    said = [e.data["data"]["content"] for e in events if e.type == "user_message"]
    assert said == ["after the resume"]
    assert "history 1" in [e.data["data"]["text"] for e in events if e.type == "output"]


@pytest.mark.asyncio
async def test_an_agent_without_idle_after_never_has_its_status_written(world: World) -> None:
    name = world.agents.create("plain", world.runner)
    before = world.agents.get(name)["metadata"]["resourceVersion"]
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        # A turn of 1.5 s, driven and watched on an open stream: every kind of use.
        turn = await client.send(session, "emit 5 300")
        await asyncio.wait_for(collect_turn(client.events(session), turn), TIMEOUT)
    finally:
        await client.aclose()
    after = world.agents.get(name)
    assert after["metadata"]["resourceVersion"] == before
    assert "lastActivityTime" not in after["status"]


@pytest.mark.asyncio
async def test_an_open_event_stream_keeps_last_activity_time_advancing(world: World) -> None:
    name = world.agents.create("watched", world.runner, idle_after="10s")  # beats every 2.5 s
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        # A client that only watches (no message is sent), until it is cancelled.
        watching = asyncio.create_task(collect_turn(client.events(session), "no such turn"))
        await written_times(world, name, 3)
        assert not watching.done()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_long_turn_keeps_last_activity_time_advancing_without_a_stream(
    world: World,
) -> None:
    name = world.agents.create("busy", world.runner, idle_after="10s")
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        await client.send(session, "emit 40 300")  # 12 s of output, no client watching
        await written_times(world, name, 3)
        assert (await client.get_session(session))["state"] == "running"
    finally:
        await client.aclose()


def test_paddock_chat_shows_the_agent_waking_then_its_answer(world: World, tmp_path: Path) -> None:
    name = idle_suspended(world, "chatty", datetime.now(UTC) - timedelta(minutes=1))
    token = tmp_path / "token"
    token.write_text(world.token)
    argv = [
        sys.executable, "-m", "paddock.cli", "chat", name, "-n", world.agents.namespace,
        "--gateway", world.gateway, "--token-file", str(token),
    ]  # fmt: skip
    pipe = subprocess.PIPE
    with subprocess.Popen(argv, text=True, stdin=pipe, stdout=pipe, stderr=pipe) as chat:
        assert chat.stdin is not None
        assert chat.stdout is not None
        try:
            first = chat.stdout.readline()
            session = first.strip().removeprefix("[session ").removesuffix("]")
            chat.stdin.write("hello\n")
            chat.stdin.flush()

            def waking() -> bool:
                answer = httpx.get(
                    f"{world.sessions(name)}/{session}",
                    headers={"Authorization": f"Bearer {world.token}"},
                )
                return bool(answer.json().get("state") == "agent_waking")

            wait_for(waking, "the session to wait for the agent to wake")
            world.agents.set_ready(name, world.runner)
            out, err = chat.communicate(timeout=TIMEOUT)  # end of input: chat ends after the turn
        finally:
            chat.kill()
    assert chat.returncode == 0, err
    assert out.splitlines() == [
        "[agent waking: it was idle]",
        "[agent back: resuming the turn]",
        "history 1",
        "hello",
        "assistant: done 0",
        "[turn done]",
    ]


@pytest.mark.asyncio
async def test_a_turn_waiting_for_an_agent_a_person_then_suspends_fails_at_once_saying_so(
    world: World,
) -> None:
    name = world.agents.create("shelved")  # never Ready: its turn waits
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        accepted = await post(world, name, session, "anyone there?")
        assert accepted.status_code == 202, accepted.text

        async def suspend_while_waiting(event: Event) -> None:
            if event.type == "agent_restarting":
                world.agents.server.kubectl(
                    "patch", "agent", name, "-n", world.agents.namespace, "--type=merge",
                    "-p", '{"spec":{"suspend":true}}',
                )  # fmt: skip

        turn = accepted.json()["turn_id"]
        events = await asyncio.wait_for(
            collect_turn(client.events(session), turn, suspend_while_waiting), TIMEOUT
        )
    finally:
        await client.aclose()
    (error,) = [e for e in events if e.type == "error"]
    assert "suspended by spec.suspend: true" in error.data["data"]["message"]
    assert f"kubectl patch agent {name}" in error.data["data"]["message"]
    assert events[-1].data["data"] == {"reason": "error"}
