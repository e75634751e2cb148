"""Real parts for the gateway's tests: redis-server, runner processes, gateway processes, Agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paddock.kubeobj import rfc3339, timestamp
from paddock_testing.agents import minimal_agent
from paddock_testing.apiserver import ApiServer
from paddock_testing.proc import free_port
from paddock_testing.redis import RedisServer
from paddock_testing.wait import wait_http

PYTHON = sys.executable


class Processes:
    """Child processes started by one test, killed at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
        log.close()
        self.children.append(process)
        return process

    def runner(self, port: int | None = None) -> tuple[str, subprocess.Popen[bytes]]:
        """A scripted runner process speaking paddock.protocol; its URL."""
        port = port or free_port()
        argv = [PYTHON, "-m", "paddock_testing.scripted_runner", "--port", str(port)]
        process = self.spawn(f"runner-{port}", argv, {})
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", process)
        return url, process

    def gateway(self, env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
        """A `paddock gateway` process; its URL."""
        port = free_port()
        argv = [PYTHON, "-m", "paddock.cli", "gateway"]
        process = self.spawn(f"gateway-{port}", argv, {**env, "PADDOCK_GATEWAY_PORT": str(port)})
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", process)
        return url, process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no goodbye, as when a Pod's node dies."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        """Kill every child still running."""
        for process in self.children:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start processes; they are killed when the test ends."""
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """Processes shared by the tests of one module."""
    procs = Processes(tmp_path_factory.mktemp("processes"))
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (append-only file on)."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the shared redis-server, emptied first."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


# --- Agents on the real API server ---------------------------------------------------------------


class Agents:
    """Create Agents and play the operator by writing their status."""

    def __init__(self, server: ApiServer, namespace: str) -> None:
        self.server = server
        self.namespace = namespace

    def create(
        self, name: str, endpoint: str | None = None, *, idle_after: str | None = None,
        suspend: bool = False,
    ) -> str:  # fmt: skip
        """Apply an Agent (with spec.lifecycle.idleAfter, spec.suspend when given); Ready at
        `endpoint` when one is given."""
        body = minimal_agent(name)
        if idle_after:
            body["spec"]["lifecycle"] = {"idleAfter": idle_after}
        body["spec"]["suspend"] = suspend
        self.server.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(body))
        if endpoint:
            self.set_ready(name, endpoint)
        return name

    def get(self, name: str) -> dict[str, Any]:
        """The Agent as the API server has it now."""
        got = self.server.kubectl("get", "agent", name, "-n", self.namespace, "-o", "json")
        agent: dict[str, Any] = json.loads(got.stdout)
        return agent

    def last_activity(self, name: str) -> datetime | None:
        """status.lastActivityTime, as the gateway wrote it."""
        written = self.get(name).get("status", {}).get("lastActivityTime")
        return timestamp(written) if written else None

    def set_ready(self, name: str, endpoint: str | None) -> None:
        """Ready=True with the runner at `endpoint`, or Ready=False (Pod restarting) for None.

        Either way the Agent is awake: idleSuspendTime is cleared, as the operator does on a wake.
        """
        ready = "True" if endpoint else "False"
        reason = "RunnerReady" if endpoint else "PodRestarting"
        status = {
            "phase": "Ready" if endpoint else "Starting",
            "endpoint": endpoint,
            "conditions": [_ready_condition(ready, reason)],
            "idleSuspendTime": None,
            **({"wakeTime": None} if endpoint else {}),
        }
        self._write_status(name, status)

    def woken(self, name: str, at: datetime) -> None:
        """Woken from an idle suspend at `at` (by an earlier write), its Pod not made yet: the
        status the operator writes on a wake."""
        status = {
            "phase": "Pending",
            "endpoint": None,
            "conditions": [_ready_condition("False", "PodNotCreated")],
            "idleSuspendTime": None,
            "wakeTime": rfc3339(at),
        }
        self._write_status(name, status)

    def suspend_idle(self, name: str, at: datetime) -> None:
        """Suspended by the operator at `at` (its clock) for being idle: Ready=False, Idle."""
        status = {
            "phase": "Suspended",
            "endpoint": None,
            "conditions": [_ready_condition("False", "Idle")],
            "idleSuspendTime": rfc3339(at),
        }
        self._write_status(name, status)

    def _write_status(self, name: str, status: dict[str, Any]) -> None:
        self.server.kubectl(
            "patch", "agent", name, "-n", self.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip


def _ready_condition(status: str, reason: str) -> dict[str, str]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": now,
    }


@pytest.fixture
def agents(apiserver: ApiServer, namespace: str) -> Agents:
    """Agents in a fresh namespace."""
    return Agents(apiserver, namespace)


def _service_account_token(server: ApiServer, namespace: str, name: str, *rules: str) -> str:
    server.kubectl("create", "serviceaccount", name, "-n", namespace)
    if rules:
        names = [f"--resource-name={agent}" for agent in rules]
        server.kubectl(
            "create", "role", name, "-n", namespace, "--verb=connect",
            "--resource=agents.paddock.dev", *names,
        )  # fmt: skip
        server.kubectl(
            "create", "rolebinding", name, "-n", namespace, f"--role={name}",
            f"--serviceaccount={namespace}:{name}",
        )  # fmt: skip
    return server.kubectl("create", "token", name, "-n", namespace).stdout.strip()


@pytest.fixture(scope="session")
def gateway_env(
    apiserver: ApiServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment for `paddock gateway` processes: the real API server, the shared Redis."""
    token_file = tmp_path_factory.mktemp("gateway") / "token"
    token_file.write_text(apiserver.token)
    return {
        "PADDOCK_GATEWAY_REDIS_URL": redis_server.url,
        "PADDOCK_GATEWAY_KUBE_URL": apiserver.url,
        "PADDOCK_GATEWAY_KUBE_TOKEN_FILE": str(token_file),
        "PADDOCK_GATEWAY_KUBE_CA_FILE": str(apiserver.ca_file),
        "PADDOCK_GATEWAY_LEASE_SECONDS": "1",
        "PADDOCK_GATEWAY_SWEEP_SECONDS": "0.3",
        "PADDOCK_GATEWAY_AGENT_POLL_SECONDS": "0.2",
        "PADDOCK_GATEWAY_RUNNER_HEALTH_SECONDS": "1",
        "PADDOCK_GATEWAY_KEEPALIVE_SECONDS": "1",
        "PADDOCK_GATEWAY_RESTART_TIMEOUT_SECONDS": "60",
    }


TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def agents_in(apiserver: ApiServer) -> Callable[[str], Agents]:
    """agents_in(namespace): create Agents there and write their status."""
    return lambda namespace: Agents(apiserver, namespace)


@pytest.fixture(scope="session")
def token_in(apiserver: ApiServer) -> TokenFactory:
    """token_in(namespace, name, *agents): a ServiceAccount token allowed `connect` on those."""
    return lambda namespace, name, *allowed: _service_account_token(
        apiserver, namespace, name, *allowed
    )


@pytest.fixture
def sa_token(apiserver: ApiServer, namespace: str) -> TokenFactory:
    """sa_token(name, *agents): a ServiceAccount's token, allowed `connect` on those Agents."""

    def make(name: str, *allowed_agents: str) -> str:
        return _service_account_token(apiserver, namespace, name, *allowed_agents)

    return make
