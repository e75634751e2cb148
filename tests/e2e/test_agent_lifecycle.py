"""Tier 4, must-shows 1, 2, 4, 5 and 6: the example Agent on a real kind cluster.

Everything is real: kind nodes built here, the chart's operator, gateway and Redis, the sandbox Pod
with the vault sidecar, llama-server serving a tiny GGUF model, and the runner with the reference
agent. The tests talk to the gateway over its NodePort as `paddock chat` would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from paddock_gateway.client import Event, GatewayClient
from paddock_testing.kind import (
    EXAMPLE_AGENT,
    EXAMPLE_NAMESPACE,
    GATEWAY_URL,
    SYSTEM_NAMESPACE,
    Kind,
    wait_until,
)
from paddock_testing.sessions import assert_exactly_once, collect_turn

pytestmark = pytest.mark.cluster

NS, AGENT = EXAMPLE_NAMESPACE, EXAMPLE_AGENT


def sandbox_pod(kind: Kind) -> dict[str, Any]:
    pods = kind.sandbox_pods(NS, AGENT)
    assert len(pods) == 1, (
        f"expected one sandbox Pod, found {[p['metadata']['name'] for p in pods]}"
    )
    return pods[0]


def ready_pod(kind: Kind) -> dict[str, Any] | None:
    """The Agent's single sandbox Pod once every container is ready and the Agent says Ready."""
    if not kind.agent_ready(NS, AGENT):
        return None
    pods = [p for p in kind.sandbox_pods(NS, AGENT) if not p["metadata"].get("deletionTimestamp")]
    if len(pods) != 1:
        return None
    status = pods[0]["status"]
    statuses = status.get("containerStatuses") or []
    sidecars = [
        s
        for s in status.get("initContainerStatuses") or []
        if s["name"] == "vault"  # the native sidecar; egress-init has finished
    ]
    ready = statuses and sidecars and all(s["ready"] for s in statuses + sidecars)
    return pods[0] if ready else None


async def run_turn(
    client: GatewayClient, session: str, after: str | None, text: str
) -> list[Event]:
    """Send `text` and collect every event after `after` up to that turn's end."""
    turn = await client.send(session, text)
    return await collect_turn(client.events(session, after, retry_delay=0.5), turn)


async def replay(client: GatewayClient, session: str, turns: int) -> list[Event]:
    """Every event of the session from the start, until the end of its `turns`-th turn."""
    seen: list[Event] = []
    ended = 0
    async for event in client.events(session, None):
        seen.append(event)
        ended += event.type == "turn_end"
        if ended == turns:
            return seen
    raise AssertionError("the stream ended early")


@pytest_asyncio.fixture
async def client(kind: Kind) -> AsyncIterator[GatewayClient]:
    token = kind.token(NS, "e2e-alice", AGENT)
    gateway = GatewayClient([GATEWAY_URL], token, NS, AGENT)
    try:
        yield gateway
    finally:
        await gateway.aclose()


def write_workspace_file(kind: Kind) -> tuple[str, str]:
    name, content = f"e2e-{uuid.uuid4().hex[:8]}.txt", uuid.uuid4().hex
    pod = sandbox_pod(kind)["metadata"]["name"]
    kind.exec(NS, pod, "harness", "sh", "-c", f"echo {content} > /workspace/{name}")
    return name, content


def read_workspace_file(kind: Kind, name: str) -> str:
    pod = sandbox_pod(kind)["metadata"]["name"]
    return kind.exec(NS, pod, "harness", "cat", f"/workspace/{name}").strip()


def test_chart_installs_and_the_example_agent_is_ready(kind: Kind) -> None:
    for workload in kind.items("deployments,statefulsets", SYSTEM_NAMESPACE):
        status, want = workload["status"], workload["spec"]["replicas"]
        assert status.get("readyReplicas") == want, f"{workload['metadata']['name']}: {status}"
    pod = wait_until(lambda: ready_pod(kind), "the example Agent's Pod to be ready")
    # The vault is a native sidecar: an init container that keeps running.
    sidecars = [c for c in pod["spec"]["initContainers"] if c.get("restartPolicy") == "Always"]
    containers = {c["name"] for c in pod["spec"]["containers"] + sidecars}
    assert {"harness", "model", "vault"} <= containers
    statuses = pod["status"]["containerStatuses"] + pod["status"]["initContainerStatuses"]
    assert all(s["ready"] for s in statuses if s["name"] in containers), statuses
    table = kind.kubectl("get", "agents", namespace=NS).stdout
    row = next(line for line in table.splitlines() if line.startswith(AGENT + " "))
    assert "Ready" in row.split(), table


@pytest.mark.asyncio
async def test_a_session_streams_tokens_from_llama_server_in_the_pod(
    kind: Kind, client: GatewayClient
) -> None:
    wait_until(lambda: ready_pod(kind), "the example Agent to be Ready")
    session = await client.create_session()
    events = await run_turn(client, session["id"], None, "Say hello.")
    tokens = [e for e in events if e.type == "token"]
    assert len(tokens) >= 2, [e.type for e in events]
    assert "".join(e.data["data"]["text"] for e in tokens).strip()
    assert events[-1].data["data"]["reason"] == "done", events[-1].data
    # The tokens came from llama-server in the sandbox Pod, serving the Agent's default model.
    pod = sandbox_pod(kind)["metadata"]["name"]
    models = kind.exec(NS, pod, "harness", "curl", "-s", "http://127.0.0.1:8080/v1/models")
    assert '"tiny"' in models, models
    assert_exactly_once(events)


@pytest.mark.asyncio
async def test_a_deleted_pod_comes_back_and_the_session_goes_on_exactly_once(
    kind: Kind, client: GatewayClient
) -> None:
    wait_until(lambda: ready_pod(kind), "the example Agent to be Ready")
    name, content = write_workspace_file(kind)
    session = (await client.create_session())["id"]
    first = await run_turn(client, session, None, "First turn.")
    old = sandbox_pod(kind)
    restarts = kind.get("agent", AGENT, NS)["status"].get("restarts", 0)  # type: ignore[index]

    # The second turn starts and the Pod is deleted under it.
    turn = await client.send(session, "Second turn, during which the Pod goes away.")
    kind.kubectl("delete", "pod", old["metadata"]["name"], "--wait=false", namespace=NS)
    rest: list[Event] = []
    async for event in client.events(session, first[-1].id, retry_delay=0.5):
        rest.append(event)
        if event.type == "turn_end" and event.data.get("turn_id") == turn:
            break
    new = wait_until(lambda: ready_pod(kind), "the sandbox Pod to be recreated and ready", 300)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    agent = kind.get("agent", AGENT, NS)
    assert agent is not None
    assert agent["status"]["restarts"] == restarts + 1

    third = await run_turn(client, session, rest[-1].id, "Third turn, in the new Pod.")
    assert third[-1].data["data"]["reason"] == "done", [
        e.data.get("data") for e in third[1:] if e.type != "token"
    ]
    everything = await replay(client, session, 3)
    assert_exactly_once(everything)
    assert [e.id for e in everything] == [e.id for e in first + rest + third]
    assert read_workspace_file(kind, name) == content


@pytest.mark.asyncio
async def test_restarting_operator_and_gateway_keeps_pods_and_sessions(
    kind: Kind, client: GatewayClient
) -> None:
    wait_until(lambda: ready_pod(kind), "the example Agent to be Ready")
    session = (await client.create_session())["id"]
    before = await run_turn(client, session, None, "Before the restart.")
    pod = sandbox_pod(kind)

    for deployment in ("paddock-operator", "paddock-gateway"):
        kind.kubectl("rollout", "restart", f"deployment/{deployment}", namespace=SYSTEM_NAMESPACE)
    for deployment in ("paddock-operator", "paddock-gateway"):
        kind.kubectl(
            "rollout", "status", f"deployment/{deployment}", "--timeout=300s",
            namespace=SYSTEM_NAMESPACE,
        )  # fmt: skip
    # Give the new operator time to resync every Agent: it must not make a second Pod.
    wait_until(lambda: ready_pod(kind), "the Agent to be Ready after the restart")
    after_pod = sandbox_pod(kind)
    assert after_pod["metadata"]["uid"] == pod["metadata"]["uid"], "the sandbox Pod was replaced"

    replayed = await replay(client, session, 1)
    assert [(e.id, e.type) for e in replayed] == [(e.id, e.type) for e in before]
    after = await run_turn(client, session, before[-1].id, "After the restart.")
    assert after[-1].data["data"]["reason"] == "done"
    assert_exactly_once(before + after)
    assert len(kind.sandbox_pods(NS, AGENT)) == 1


def test_suspend_and_resume_keep_the_workspace(kind: Kind) -> None:
    wait_until(lambda: ready_pod(kind), "the example Agent to be Ready")
    name, content = write_workspace_file(kind)
    claim = f"{AGENT}-workspace"
    try:
        kind.kubectl(
            "patch", "agent", AGENT, "--type=merge", "-p", '{"spec":{"suspend":true}}', namespace=NS
        )
        wait_until(
            lambda: (
                not kind.sandbox_pods(NS, AGENT)
                and (kind.get("agent", AGENT, NS) or {}).get("status", {}).get("phase")
                == "Suspended"
            ),
            "the Pod to go and the Agent to say Suspended",
        )
        assert kind.get("persistentvolumeclaim", claim, NS) is not None
    finally:
        kind.kubectl(
            "patch",
            "agent",
            AGENT,
            "--type=merge",
            "-p",
            '{"spec":{"suspend":false}}',
            namespace=NS,
        )
    wait_until(lambda: ready_pod(kind), "the Agent to be Ready again", 300)
    assert read_workspace_file(kind, name) == content
