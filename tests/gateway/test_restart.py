"""Sessions survive their runner and their gateway replica: every event exactly once."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from paddock_gateway.client import Event, GatewayClient
from paddock_testing.runner import command_runner
from paddock_testing.sessions import assert_exactly_once, collect_turn

pytestmark = pytest.mark.apiserver

TIMEOUT = 120


def texts(events: list[Event], incarnation: str) -> list[str]:
    """The output lines one runner incarnation produced."""
    return [
        e.data["data"]["text"]
        for e in events
        if e.type == "output" and e.data.get("incarnation") == incarnation
    ]


async def first_turn(client: GatewayClient, session_id: str) -> str:
    """Run a short turn, so the session has history; the cursor after it."""
    turn = await client.send(session_id, "hello")
    events = await collect_turn(client.events(session_id, None, retry_delay=0.1), turn)
    assert [e.type for e in events][-1] == "turn_end"
    cursor = events[-1].id
    assert cursor is not None
    return cursor


@pytest.mark.asyncio
async def test_runner_killed_mid_stream_turn_completes_every_event_once(
    processes: Any, agents: Any, gateway_env: dict[str, str], apiserver: Any
) -> None:
    runner_url, runner = processes.runner()
    name = agents.create("restarts", runner_url)
    gateway_url, _ = processes.gateway(gateway_env)
    client = GatewayClient([gateway_url], apiserver.token, agents.namespace, name)
    try:
        session_id = (await client.create_session())["id"]
        cursor = await first_turn(client, session_id)
        turn = await client.send(session_id, "emit 40 50")
        killed = asyncio.Event()

        async def kill_after_some_lines(event: Event) -> None:
            if event.type == "output" and event.data["data"]["text"] == "line 8":
                processes.kill(runner)
                agents.set_ready(name, None)
                new_url, _ = processes.runner()
                agents.set_ready(name, new_url)
                killed.set()

        events = await asyncio.wait_for(
            collect_turn(
                client.events(session_id, cursor, retry_delay=0.1), turn, kill_after_some_lines
            ),
            TIMEOUT,
        )
        assert killed.is_set()
        assert_exactly_once(events)
        kinds = [e.type for e in events]
        assert kinds.index("agent_restarting") < kinds.index("agent_ready")
        incarnations = list(dict.fromkeys(e.data["incarnation"] for e in events if "seq" in e.data))
        assert len(incarnations) == 2
        old, new = incarnations
        assert "line 8" in texts(events, old)
        # The new runner got the turn again with the history: hello, its answer, this message.
        assert texts(events, new) == ["history 3"] + [f"line {i}" for i in range(1, 41)]
        assert events[-1].data["data"] == {"reason": "done"}
        session = await client.get_session(session_id)
        assert session["state"] == "idle"
        assert session["turns"] == 2

        # A client reading the whole session afterwards sees the same events, once each.
        replay = await collect_turn(client.events(session_id, cursor, retry_delay=0.1), turn)
        assert [(e.id, e.type) for e in replay] == [(e.id, e.type) for e in events]
    finally:
        await client.aclose()


# A command-line harness: prints `line 1` .. `line N` (N: the user's message), 50 ms apart.
LINES = (
    "import sys, time\n"
    "for i in range(int(sys.argv[1])):\n"
    "    print(f'line {i + 1}', flush=True)\n"
    "    time.sleep(0.05)\n"
)


@pytest.mark.asyncio
async def test_real_runner_killed_mid_command_turn_completes_every_event_once(
    processes: Any, agents: Any, gateway_env: dict[str, str], apiserver: Any, tmp_path: Path
) -> None:
    # The same port across restarts, as a Service in front of the Agent's Pod keeps its address.
    runner = command_runner([sys.executable, "-c", LINES, "{message}"], tmp_path)
    first = runner.start()
    try:
        name = agents.create("command", runner.url)
        gateway_url, _ = processes.gateway(gateway_env)
        client = GatewayClient([gateway_url], apiserver.token, agents.namespace, name)
        session_id = (await client.create_session())["id"]
        turn = await client.send(session_id, "30")
        restarted: list[str] = []

        async def kill_the_pod(event: Event) -> None:
            if not restarted and event.type == "output" and event.data["data"]["text"] == "line 6":
                runner.kill()
                agents.set_ready(name, None)
                restarted.append(runner.start().incarnation)
                agents.set_ready(name, runner.url)

        try:
            events = await asyncio.wait_for(
                collect_turn(client.events(session_id, None, retry_delay=0.1), turn, kill_the_pod),
                TIMEOUT,
            )
        finally:
            await client.aclose()
        assert_exactly_once(events)
        (second,) = restarted
        assert "line 6" in texts(events, first.incarnation)
        assert texts(events, second) == [f"line {i}" for i in range(1, 31)]
        kinds = [e.type for e in events]
        assert kinds.index("agent_restarting") < kinds.index("agent_ready")
        assert events[-1].data["incarnation"] == second
        assert events[-1].data["data"]["reason"] == "done"
    finally:
        runner.stop()


@pytest.mark.asyncio
async def test_gateway_replica_killed_client_resumes_on_another_and_loses_nothing(
    processes: Any, agents: Any, gateway_env: dict[str, str], apiserver: Any
) -> None:
    runner_url, _ = processes.runner()
    name = agents.create("replicas", runner_url)
    url_a, replica_a = processes.gateway(gateway_env)
    url_b, _ = processes.gateway(gateway_env)
    # The client knows both replicas, as it would know one Service in front of them.
    client = GatewayClient([url_a, url_b], apiserver.token, agents.namespace, name)
    try:
        session_id = (await client.create_session())["id"]
        turn = await client.send(session_id, "emit 40 50")  # posted to A: A drives the turn
        killed = asyncio.Event()

        async def kill_replica_a(event: Event) -> None:
            if event.type == "output" and event.data["data"]["text"] == "line 10":
                processes.kill(replica_a)
                killed.set()

        events = await asyncio.wait_for(
            collect_turn(client.events(session_id, None, retry_delay=0.1), turn, kill_replica_a),
            TIMEOUT,
        )
        assert killed.is_set()
        assert_exactly_once(events)
        # The runner was never restarted: replica B took the turn over and went on reading the
        # same incarnation after the last stored event, so its lines are all there, once.
        (incarnation,) = {e.data["incarnation"] for e in events if "seq" in e.data}
        assert texts(events, incarnation) == ["history 1"] + [f"line {i}" for i in range(1, 41)]
        assert "agent_restarting" not in [e.type for e in events]
        assert Counter(e.type for e in events)["turn_end"] == 1
    finally:
        await client.aclose()
