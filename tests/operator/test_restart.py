"""The operator killed mid-reconcile, then started again: no duplicate Pods, stable stubs."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from paddock_testing.agents import idle_agent, minimal_agent
from paddock_testing.apiserver import ApiServer
from paddock_testing.cluster import Cluster, wait_for

pytestmark = pytest.mark.apiserver

AGENTS = 24


class OperatorProcess:
    """`paddock operator` as a real child process."""

    def __init__(self, server: ApiServer, log: Path) -> None:
        self.server = server
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = os.environ | {"KUBECONFIG": str(self.server.kubeconfig), "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "paddock.cli", "operator", "--standalone", "--verbose"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no chance to finish what it was doing."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def operator_process(
    apiserver: ApiServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(apiserver, tmp_path / "operator.log")
    yield process
    process.kill()
    if request.node.rep_call.failed:
        tail = process.log.read_text(errors="replace").splitlines()[-40:]
        print("operator log, last lines:", *tail, sep="\n")  # noqa: T201 - shown on failure


def sandbox_pods(cluster: Cluster) -> list[dict[str, object]]:
    out = cluster.kubectl("get", "pods", "-l", "paddock.dev/agent", "-o", "json")
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


def apply_and_kill_at_the_first_pod(
    cluster: Cluster, operator: OperatorProcess, agents: list[dict[str, object]]
) -> None:
    """Apply the Agents, and SIGKILL the operator the moment the first sandbox Pod exists (a
    watch, not polling: the operator makes a Pod in milliseconds)."""
    server = cluster.server
    with (
        httpx.Client(
            base_url=server.url,
            verify=server.ssl_context(),
            headers=server.admin_headers,
            timeout=60,
        ) as client,
        client.stream(
            "GET",
            f"/api/v1/namespaces/{cluster.namespace}/pods",
            params={"watch": "1", "labelSelector": "paddock.dev/agent"},
        ) as pods,
    ):
        cluster.apply(*agents)
        for line in pods.iter_lines():
            if json.loads(line)["type"] == "ADDED":
                operator.kill()
                return
    raise AssertionError("the watch ended before any sandbox Pod appeared")


def test_killed_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, operator_process: OperatorProcess
) -> None:
    cluster.apply(cluster.secret("token", v="real-token-value"))
    operator_process.start()
    apply_and_kill_at_the_first_pod(
        cluster, operator_process, [minimal_agent(f"a{i}") for i in range(AGENTS)]
    )
    # The Pods go first (their requests are urgent): the kill lands while the rest of the batch
    # (Services, ConfigMaps, claims, statuses) is still in flight.
    agents = json.loads(cluster.kubectl("get", "agents", "-o", "json"))["items"]
    finished = [a for a in agents if (a.get("status") or {}).get("podName")]
    assert len(finished) < AGENTS, "the operator finished before it was killed: nothing was tested"
    stubs_before = {
        p["metadata"]["labels"]["paddock.dev/agent"]: p["spec"]["containers"][0]["env"]  # type: ignore[index]
        for p in sandbox_pods(cluster)
    }

    operator_process.start()
    wait_for(lambda: len(sandbox_pods(cluster)) == AGENTS, f"{AGENTS} sandbox Pods", timeout=90)
    wait_for(
        lambda: all(
            cluster.agent_status(f"a{i}").get("podName") == f"a{i}-sandbox" for i in range(AGENTS)
        ),
        "every Agent's status to name its Pod",
        timeout=60,
    )
    pods = sandbox_pods(cluster)
    owners = [p["metadata"]["labels"]["paddock.dev/agent"] for p in pods]  # type: ignore[index]
    assert sorted(owners) == sorted(f"a{i}" for i in range(AGENTS)), "one Pod per Agent"
    for pod in pods:
        name = pod["metadata"]["labels"]["paddock.dev/agent"]  # type: ignore[index]
        if name in stubs_before:  # made before the kill and left alone after it
            assert pod["spec"]["containers"][0]["env"] == stubs_before[name]  # type: ignore[index]
        secret = cluster.get("secret", f"{name}-ca")
        assert secret is not None
        stubs = json.loads(base64.b64decode(secret["data"]["stubs.json"]))
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}  # type: ignore[index]
        assert env["TOKEN"] == stubs["TOKEN"]
    restarts = [cluster.agent_status(f"a{i}").get("restarts", 0) for i in range(AGENTS)]
    assert restarts == [0] * AGENTS, "an operator restart is not a Pod restart"


def test_starts_with_more_agents_than_it_has_ever_seen_at_once(
    cluster: Cluster, operator_process: OperatorProcess
) -> None:
    # Regression: a cap on kopf's workers below the number of Agents deadlocked the start-up,
    # each worker waiting for an Agent index that the Agents without a worker never completed.
    many = 60
    cluster.apply(
        cluster.secret("token", v="real-token-value"),
        *(minimal_agent(f"m{i}") for i in range(many)),
    )
    operator_process.start()
    wait_for(lambda: len(sandbox_pods(cluster)) == many, f"{many} sandbox Pods", timeout=120)


def test_an_operator_restart_mid_idle_neither_resets_nor_shortens_the_idle_time(
    cluster: Cluster, operator_process: OperatorProcess
) -> None:
    idle_after = 10
    cluster.apply(cluster.secret("token", v="real-token-value"), idle_agent("idler", "10s"))
    operator_process.start()
    _, ready_since = cluster.wait_ready("idler")
    wait_for(
        lambda: datetime.now(UTC) > ready_since + timedelta(seconds=idle_after / 2),
        "half the idle time",
    )
    operator_process.kill()  # its timer for the Agent goes with it
    restarted = datetime.now(UTC)
    operator_process.start()
    suspended = cluster.wait_idle_suspended("idler", idle_after + 20)
    assert suspended >= ready_since + timedelta(seconds=idle_after), "suspended early"
    # Counted again from the restart, it would be at restarted + idle_after or later.
    assert suspended < restarted + timedelta(seconds=idle_after), "the restart reset the clock"
