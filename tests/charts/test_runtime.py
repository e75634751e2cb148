"""What the chart renders, run for real on loopback: Redis from the chart's redis.conf and password
Secret, its probe command, `paddock gateway` with the chart's environment, and the `helm test`
Pod's check against both. Only addresses change (the Services' names become 127.0.0.1 ports)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import pytest
import redis

from paddock_testing.proc import free_port, stop
from paddock_testing.wait import wait_for, wait_http

pytestmark = pytest.mark.integration

REDIS_HOST = "paddock-redis.paddock-system.svc:6379"


@dataclass
class ChartRedis:
    """redis-server started the way the chart's StatefulSet starts it."""

    workdir: Path
    config: str
    secret: dict[str, str]
    probe: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.secret["url"].replace(REDIS_HOST, f"127.0.0.1:{self.port}")

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not found: run hack/host-deps.sh"
        conf = self.workdir / "redis.conf"
        conf.write_text(self.config)
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        process, log = self.process, self.workdir / "redis.log"

        def probe_passes() -> bool:
            assert process.poll() is None, log.read_text()
            return self.run_probe(self.secret["password"]).returncode == 0

        wait_for(probe_passes, "the chart's probe to pass", 20, every=0.05, detail=log.read_text)

    def run_probe(self, password: str | None) -> subprocess.CompletedProcess[bytes]:
        """The StatefulSet's probe command, with REDISCLI_AUTH as the container has it."""
        env = {"PATH": os.environ["PATH"]} | ({"REDISCLI_AUTH": password} if password else {})
        return subprocess.run(self.probe, env=env, capture_output=True, check=False)


@pytest.fixture
def chart_redis(chart: Any, tmp_path: Path) -> Iterator[ChartRedis]:
    rendered = chart.render()
    port = free_port()
    (tmp_path / "data").mkdir()
    secret = rendered.find("Secret", "redis")["stringData"]
    (tmp_path / "auth.conf").write_text(secret["auth.conf"])
    config = (
        rendered.find("ConfigMap", "redis")["data"]["redis.conf"]
        .replace("port 6379", f"port {port}")
        .replace("dir /data", f"dir {tmp_path / 'data'}")
        .replace("/etc/paddock-redis/auth.conf", str(tmp_path / "auth.conf"))
    )
    (container,) = rendered.find("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"]
    probe = [
        arg.replace("-p 6379", f"-p {port}")
        for arg in container["readinessProbe"]["exec"]["command"]
    ]
    server = ChartRedis(tmp_path, config, secret, probe, port)
    server.start()
    yield server
    if server.process:
        stop(server.process)


def test_redis_keeps_writes_through_a_kill(chart_redis: ChartRedis) -> None:
    client = redis.Redis.from_url(chart_redis.url, decode_responses=True)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    client.set("session", "kept")
    client.close()
    assert chart_redis.process is not None
    chart_redis.process.send_signal(signal.SIGKILL)  # no shutdown save: only the AOF has it
    chart_redis.process.wait()
    chart_redis.start()
    # Closed here: a client left to the garbage collector (it sits in a reference cycle) closed
    # its socket in whichever later test the collection ran, as an unraisable ResourceWarning.
    with redis.Redis.from_url(chart_redis.url) as after:
        assert after.get("session") == b"kept"


def test_redis_and_its_probe_need_the_password(chart_redis: ChartRedis) -> None:
    assert chart_redis.run_probe(chart_redis.secret["password"]).returncode == 0
    assert chart_redis.run_probe(None).returncode != 0
    assert chart_redis.run_probe("wrong").returncode != 0


def test_helm_test_passes_against_the_charts_gateway_and_fails_without_redis(
    chart: Any, chart_redis: ChartRedis, tmp_path: Path
) -> None:
    rendered = chart.render()
    (gateway,) = rendered.find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    gateway_port = free_port()
    token = tmp_path / "token"
    token.write_text("unused: /healthz and /readyz need no API server")
    env = rendered.env(gateway) | {
        "PADDOCK_GATEWAY_REDIS_URL": chart_redis.url,
        "PADDOCK_GATEWAY_PORT": str(gateway_port),
        "PADDOCK_GATEWAY_KUBE_URL": "https://127.0.0.1:1",
        "PADDOCK_GATEWAY_KUBE_TOKEN_FILE": str(token),
        "PADDOCK_GATEWAY_KUBE_CA_FILE": certifi.where(),
    }
    with (tmp_path / "gateway.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "paddock.cli", *gateway["args"]],
            env=os.environ | env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{gateway_port}/readyz", process, timeout=30)
        test_pod = rendered.find("Pod", "test")
        (check,) = test_pod["spec"]["containers"]
        assert check["command"][0] == "python"
        argv = [sys.executable, *check["command"][1:], *check["args"]]
        check_env = rendered.env(check) | {
            "PATH": os.environ["PATH"],
            "GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            "REDIS_URL": chart_redis.url,
            "CHECK_SECONDS": "2",
        }
        passed = subprocess.run(argv, env=check_env, capture_output=True, text=True, check=False)
        assert passed.returncode == 0, passed.stderr
        assert passed.stdout.count("ok: ") == 3, passed.stdout

        assert chart_redis.process is not None
        stop(chart_redis.process)
        failed = subprocess.run(argv, env=check_env, capture_output=True, text=True, check=False)
        assert failed.returncode != 0
        assert "FAILED: GET http://127.0.0.1" in failed.stderr, failed.stderr
        assert "/readyz" in failed.stderr, failed.stderr
    finally:
        stop(process)
