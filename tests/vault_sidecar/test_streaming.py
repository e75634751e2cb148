"""Streams pass through as they arrive: SSE event by event, a 100 MB upload in bounded memory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from paddock_testing.vault import GITHUB_STUB, REAL_VALUES, Pki, RunningVault, Upstream

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_sse_events_arrive_one_by_one(vault: RunningVault, upstream: Upstream) -> None:
    async with (
        vault.client() as client,
        client.stream("GET", f"https://api.github.test:{upstream.port}/sse") as response,
    ):
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.aiter_lines()
        for i in range(3):
            async with asyncio.timeout(5):
                line = await anext(lines)
                while not line:
                    line = await anext(lines)
            assert line == f"data: {i}"
            # The server has not sent the next event yet: this one was not held back.
            if i + 1 < 3:
                assert not upstream.sse_sent[i + 1].is_set()
            upstream.sse_release[i].set()


def _status(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.M)}


async def _start_vault_process(
    certs: Pki, tmp_path: Path, port: int, logs: list[str]
) -> tuple[asyncio.subprocess.Process, int]:
    """`paddock vault` as its own process; its log lines are collected into logs."""
    env = os.environ | {
        "PADDOCK_VAULT_CONFIG_FILE": str(certs.write_config(tmp_path)),
        "PADDOCK_VAULT_LISTEN_HOSTS": '["127.0.0.1"]',
        "PADDOCK_VAULT_PROXY_PORT": "0",
        "PADDOCK_VAULT_TRANSPARENT_PORT": "0",
        "PADDOCK_VAULT_ADMIN_HOST": "127.0.0.1",
        "PADDOCK_VAULT_ADMIN_PORT": "0",
        "PADDOCK_VAULT_ALLOWED_PORTS": f"[{port}]",
        "PADDOCK_VAULT_UPSTREAM_CA_FILES": json.dumps([str(certs.public_ca_file)]),
        "PADDOCK_VAULT_UNSAFE_ALLOW_CIDRS": '["127.0.0.1/32", "::1/128"]',
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "paddock.cli", "vault", env=env, stderr=asyncio.subprocess.PIPE
    )
    stderr = proc.stderr
    assert stderr is not None
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def collect() -> None:
        while line := (await stderr.readline()).decode():
            logs.append(line)
            found = re.search(r"'proxy': \('127.0.0.1', (\d+)\)", line)
            if found and not listening.done():
                listening.set_result(int(found.group(1)))
        if not listening.done():
            listening.set_exception(AssertionError("the vault exited:\n" + "".join(logs)))

    proc.collector = asyncio.create_task(collect())  # type: ignore[attr-defined]
    async with asyncio.timeout(20):
        return proc, await listening


async def test_100mb_upload_streams_in_bounded_memory(
    certs: Pki, upstream: Upstream, tmp_path: Path
) -> None:
    logs: list[str] = []
    proc, proxy_port = await _start_vault_process(certs, tmp_path, upstream.port, logs)
    chunk = os.urandom(1 << 20)
    total = 100 * len(chunk)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield chunk

    try:
        async with httpx.AsyncClient(
            proxy=f"http://127.0.0.1:{proxy_port}", verify=certs.agent_context(), timeout=60
        ) as client:
            url = f"https://localhost:{upstream.port}/upload"
            warm = await client.post(
                url, content=b"warm-up", headers={"Authorization": GITHUB_STUB}
            )
            assert warm.status_code == 200
            before = _status(proc.pid)
            response = await client.post(
                url, content=body(), headers={"Authorization": GITHUB_STUB}
            )
            after = _status(proc.pid)
        assert response.status_code == 200
        assert response.json() == {"received": total}
        growth = after["VmHWM"] - before["VmRSS"]
        # A proxy that buffered the body would grow by at least 100 MB.
        assert growth < 24 << 20, f"the vault's peak memory grew by {growth >> 20} MiB"
    finally:
        proc.terminate()
        await proc.wait()
    assert any('"event": "forwarded"' in line for line in logs)
    assert not any(real in line for line in logs for real in REAL_VALUES)
