"""A real gateway process scraped over HTTP as Prometheus would: a session driven through it, a
stream held open and resumed, refused callers and an idle wake all show in /metrics, and no label
carries a session id, a token or an Agent's identity.

The test plays the operator: it makes Agents Ready and suspends them by writing their status.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from paddock_gateway.client import Event, GatewayClient
from paddock_testing.apiserver import ApiServer
from paddock_testing.metrics import Samples, samples
from paddock_testing.sessions import collect_turn
from paddock_testing.wait import wait_until

pytestmark = pytest.mark.apiserver

TIMEOUT = 60
SESSIONS_ROUTE = "/v1/namespaces/{namespace}/agents/{agent}/sessions"


@dataclass
class World:
    """A gateway with metrics on, a runner, a namespace; every identity a test used."""

    gateway: str
    runner: str
    agents: Any
    admin: str
    reader: str
    """A ServiceAccount's token, allowed `connect` on the metered Agent only."""
    agent: str
    used: set[str] = field(default_factory=set)
    """Session, message and turn ids, tokens, names: none may appear in a scrape."""

    def client(self, agent: str | None = None, token: str | None = None) -> GatewayClient:
        agent = agent or self.agent
        return GatewayClient([self.gateway], token or self.admin, self.agents.namespace, agent)

    def sessions(self, agent: str | None = None) -> str:
        namespace = self.agents.namespace
        return f"{self.gateway}/v1/namespaces/{namespace}/agents/{agent or self.agent}/sessions"

    def scrape(self) -> Samples:
        """/metrics, with no token: Prometheus has none."""
        answer = httpx.get(f"{self.gateway}/metrics", timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        return samples(answer.text)


@pytest.fixture(scope="module")
def world(
    apiserver: ApiServer, module_processes: Any, gateway_env: dict[str, str], agents_in: Any,
    token_in: Any,
) -> World:  # fmt: skip
    namespace = f"metered-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", namespace)
    runner, _ = module_processes.runner()
    agents = agents_in(namespace)
    agent = agents.create(f"counted-{uuid.uuid4().hex[:6]}", runner)
    reader_name = f"reader-{uuid.uuid4().hex[:6]}"
    reader = token_in(namespace, reader_name, agent)
    gateway, _ = module_processes.gateway(gateway_env)
    world = World(gateway, runner, agents, apiserver.token, reader, agent)
    user = f"system:serviceaccount:{namespace}:{reader_name}"
    world.used |= {namespace, agent, reader, reader_name, user, apiserver.token}
    return world


@pytest_asyncio.fixture
async def client(world: World) -> AsyncIterator[GatewayClient]:
    client = world.client()
    yield client
    await client.aclose()


def value(found: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the scrape does not have it."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def clients(world: World) -> float:
    return value(world.scrape(), "paddock_gateway_stream_clients", transport="sse")


async def one_turn(world: World, client: GatewayClient, content: str) -> tuple[str, list[Event]]:
    """A new session with one turn driven to its end: the session id and its events."""
    session = (await client.create_session())["id"]
    message_id = uuid.uuid4().hex
    turn = await client.send(session, content, message_id)
    events = await asyncio.wait_for(collect_turn(client.events(session), turn), TIMEOUT)
    world.used |= {session, message_id, turn}
    return session, events


@pytest.mark.asyncio
async def test_a_session_driven_through_the_gateway_is_counted(
    world: World, client: GatewayClient
) -> None:
    before = world.scrape()
    session, events = await one_turn(world, client, "count me")
    after = world.scrape()
    assert grew(before, after, "paddock_gateway_sessions_created_total") == 1
    assert grew(before, after, "paddock_gateway_sessions") == 1
    assert grew(before, after, "paddock_gateway_turns_started_total") == 1
    assert grew(before, after, "paddock_gateway_turns_finished_total", outcome="done") == 1
    assert value(after, "paddock_gateway_turns_running") == 0
    appended = "paddock_gateway_events_appended_total"
    for kind in ("session_created", "user_message", "turn_start", "output", "turn_end"):
        stored = sum(e.type == kind for e in events)
        assert stored, kind
        assert grew(before, after, appended, type=kind) == stored, kind
    opened = {"method": "POST", "route": SESSIONS_ROUTE, "code": "2xx"}
    assert grew(before, after, "paddock_gateway_http_request_duration_seconds_count", **opened)
    stored = {"operation": "ingest", "outcome": "ok"}
    assert grew(before, after, "paddock_gateway_redis_operation_duration_seconds_count", **stored)
    assert grew(before, after, "paddock_gateway_auth_decisions_total", outcome="allowed") >= 3
    await client.http.delete(f"{world.sessions()}/{session}")
    gone = world.scrape()
    assert grew(after, gone, "paddock_gateway_sessions_deleted_total") == 1
    assert grew(after, gone, "paddock_gateway_sessions") == -1


@pytest.mark.asyncio
async def test_an_open_event_stream_is_a_connected_client_until_it_closes(
    world: World, client: GatewayClient
) -> None:
    session = (await client.create_session())["id"]
    world.used.add(session)
    before = clients(world)
    async with client.http.stream("GET", f"{world.sessions()}/{session}/events") as stream:
        assert stream.status_code == 200
        await wait_until(lambda: clients(world) == before + 1, "the stream to be counted")
    await wait_until(lambda: clients(world) == before, "the closed stream to be uncounted")


@pytest.mark.asyncio
async def test_a_resumed_stream_counts_the_events_it_replays(
    world: World, client: GatewayClient
) -> None:
    session, events = await one_turn(world, client, "emit 5")
    ids = [e.id for e in events if e.id is not None]
    before = world.scrape()
    cursor = ids[2]
    resumed = client.events(session, after=cursor)
    again = [event.id async for event in _until_turn_end(resumed)]
    assert again == ids[3:]
    after = world.scrape()
    assert grew(before, after, "paddock_gateway_stream_resume_events_count") == 1
    assert grew(before, after, "paddock_gateway_stream_resume_events_sum") == len(ids) - 3


async def _until_turn_end(events: AsyncGenerator[Event, None]) -> AsyncIterator[Event]:
    async for event in events:
        yield event
        if event.type == "turn_end":
            await events.aclose()
            return


@pytest.mark.asyncio
async def test_a_401_and_a_403_are_counted_as_decisions(world: World, token_in: Any) -> None:
    before = world.scrape()
    stranger = token_in(world.agents.namespace, f"stranger-{uuid.uuid4().hex[:6]}")
    world.used.add(stranger)
    async with httpx.AsyncClient(timeout=30) as http:
        bad = await http.post(world.sessions(), headers={"Authorization": "Bearer not-a-token"})
        refused = await http.post(world.sessions(), headers={"Authorization": f"Bearer {stranger}"})
    assert (bad.status_code, refused.status_code) == (401, 403)
    after = world.scrape()
    decisions = "paddock_gateway_auth_decisions_total"
    assert grew(before, after, decisions, outcome="unauthenticated") == 1
    assert grew(before, after, decisions, outcome="forbidden") == 1
    assert grew(before, after, decisions, outcome="allowed") == 0
    answered = {"method": "POST", "route": SESSIONS_ROUTE, "code": "4xx"}
    assert (
        grew(before, after, "paddock_gateway_http_request_duration_seconds_count", **answered) == 2
    )


@pytest.mark.asyncio
async def test_a_message_that_wakes_an_idle_agent_counts_a_wake_not_a_restart(
    world: World,
) -> None:
    name = world.agents.create(f"sleeper-{uuid.uuid4().hex[:6]}", idle_after="10s")
    world.agents.suspend_idle(name, datetime.now(UTC) - timedelta(minutes=1))
    world.used.add(name)
    before = world.scrape()
    client = world.client(name)
    try:

        async def play_the_operator(event: Event) -> None:
            if event.type == "agent_waking":
                world.agents.set_ready(name, world.runner)

        session = (await client.create_session())["id"]
        turn = await client.send(session, "wake up")
        world.used |= {session, turn}
        await asyncio.wait_for(
            collect_turn(client.events(session), turn, play_the_operator), TIMEOUT
        )
    finally:
        await client.aclose()
    after = world.scrape()
    assert grew(before, after, "paddock_gateway_agent_waits_total", reason="waking") == 1
    assert grew(before, after, "paddock_gateway_agent_waits_total", reason="restarting") == 0
    appended = "paddock_gateway_events_appended_total"
    assert grew(before, after, appended, type="agent_waking") == 1
    assert grew(before, after, appended, type="agent_ready") == 1


@pytest.mark.asyncio
async def test_a_runner_killed_mid_turn_counts_one_restart_waited_out(
    world: World, processes: Any
) -> None:
    runner_url, runner = processes.runner()
    name = world.agents.create(f"restarts-{uuid.uuid4().hex[:6]}", runner_url)
    world.used.add(name)
    before = world.scrape()
    client = world.client(name)
    killed = asyncio.Event()
    try:

        async def kill_the_runner(event: Event) -> None:
            # Once: the new runner runs the turn again from its first line.
            if (
                event.type == "output"
                and event.data["data"]["text"] == "line 3"
                and not killed.is_set()
            ):
                killed.set()
                processes.kill(runner)
                world.agents.set_ready(name, None)
                new_url, _ = processes.runner()
                world.agents.set_ready(name, new_url)

        session = (await client.create_session())["id"]
        turn = await client.send(session, "emit 20 50")
        world.used |= {session, turn}
        events = client.events(session, retry_delay=0.1)
        await asyncio.wait_for(collect_turn(events, turn, kill_the_runner), TIMEOUT)
    finally:
        await client.aclose()
    assert killed.is_set()
    after = world.scrape()
    assert grew(before, after, "paddock_gateway_agent_waits_total", reason="restarting") == 1
    assert grew(before, after, "paddock_gateway_agent_waits_total", reason="waking") == 0
    assert grew(before, after, "paddock_gateway_runner_reconnects_total") == 0  # a new runner
    assert grew(before, after, "paddock_gateway_turns_finished_total", outcome="done") == 1
    assert grew(before, after, "paddock_gateway_turns_started_total") == 1  # re-sent, not new


@pytest.mark.asyncio
async def test_no_label_or_line_of_a_scrape_carries_an_id_a_token_or_a_name(
    world: World, client: GatewayClient
) -> None:
    # Everything this module did, and once more here so the test stands alone.
    session, _ = await one_turn(world, client, "leave no trace")
    reader = world.client(token=world.reader)
    try:
        await one_turn(world, reader, "as the reader")
    finally:
        await reader.aclose()
    async with httpx.AsyncClient(timeout=30) as http:
        await http.get(f"{world.sessions()}/{session}", headers={"Authorization": "Bearer nope"})
        await http.get(f"{world.sessions()}/{session}/events?after=1-0", headers={})
        text = (await http.get(f"{world.gateway}/metrics")).text
    secrets = world.used | {"nope"}
    labels = {value for _, pairs in samples(text) for _, value in pairs}
    assert not labels & secrets
    for secret in secrets:
        assert secret not in text, secret
    assert len(labels) < 150  # a fixed set: templates, types, outcomes, operations, buckets


@pytest.mark.asyncio
async def test_a_gateway_with_metrics_off_serves_no_metrics_and_still_serves_sessions(
    world: World, module_processes: Any, gateway_env: dict[str, str]
) -> None:
    gateway, _ = module_processes.gateway({**gateway_env, "PADDOCK_GATEWAY_METRICS": "false"})
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(f"{gateway}/metrics")).status_code == 404
    client = GatewayClient([gateway], world.admin, world.agents.namespace, world.agent)
    try:
        await one_turn(world, client, "unmeasured")
    finally:
        await client.aclose()
