"""Connection budgets: the admin port answers however many connections the agent holds, and one
client (a user in the Pod) cannot take every slot of the proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from paddock.sandbox import HARNESS_UID
from paddock_testing.vault import RunningVault, StartVault, Upstream, require, tunnel

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@contextlib.asynccontextmanager
async def held(vault: RunningVault, count: int) -> AsyncIterator[list[asyncio.StreamWriter]]:
    """count idle connections to the proxy, each accepted by the vault, closed after."""
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(count):
            writers.append((await asyncio.open_connection("127.0.0.1", vault.proxy_port))[1])
        metrics = vault.vault.ctx.metrics
        async with asyncio.timeout(10):
            while metrics.connections < count:  # noqa: ASYNC110 - the vault offers a counter
                await asyncio.sleep(0.01)
        yield writers
    finally:
        for writer in writers:
            writer.close()


async def refused_answer(vault: RunningVault) -> str:
    """What a proxy connection over the limit reads before the vault closes it."""
    with pytest.raises(ConnectionRefusedError) as refused:
        await tunnel(vault.proxy_port, "allowed.test:443", context=None)
    return str(refused.value)


async def test_probe_stays_healthy_while_the_proxy_cap_is_full(
    start_vault: StartVault, upstream: Upstream
) -> None:
    vault = await start_vault(ports=[upstream.port], max_connections=40)
    host, port = vault.vault.address("admin")
    admin = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5)
    async with held(vault, 40), admin:
        health = await admin.get("/healthz")
        assert health.status_code == 200
        answer = await refused_answer(vault)
        metrics = await admin.get("/metrics")
    assert answer.startswith("HTTP/1.1 503 ")
    assert "the vault holds its limit of 40 connections" in answer
    assert "paddock_vault_connections 40\n" in metrics.text
    assert 'paddock_vault_blocks_total{mode="explicit",reason="connection_limit"} 1' in metrics.text


async def test_one_client_cannot_take_every_slot(
    start_vault: StartVault, upstream: Upstream
) -> None:
    if os.geteuid() != 0:
        pytest.fail("the per-client test needs root (it connects as another user too)")
    require("setpriv", "curl")
    vault = await start_vault(
        ports=[upstream.port], max_connections=40, max_connections_per_client=10
    )
    async with held(vault, 10) as writers:
        # This test runs as root: root's connections are one client, at its limit.
        answer = await refused_answer(vault)
        # The harness user is another client, with slots of its own.
        curl = await asyncio.create_subprocess_exec(
            "setpriv", f"--reuid={HARNESS_UID}", f"--regid={HARNESS_UID}", "--clear-groups",
            "curl", "-sS", "-k", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
            "--noproxy", "", "-x", vault.proxy_url, f"https://allowed.test:{upstream.port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await curl.communicate()
        # A slot root gives back is root's again.
        writers.pop().close()
        metrics = vault.vault.ctx.metrics
        async with asyncio.timeout(10):
            while metrics.connections > 9:  # noqa: ASYNC110 - the vault offers a counter
                await asyncio.sleep(0.01)
        async with vault.client() as client:
            again = await client.get(f"https://api.github.test:{upstream.port}/")
    assert answer.startswith("HTTP/1.1 503 ")
    assert "uid 0 holds its limit of 10 connections" in answer
    assert (curl.returncode, out) == (0, b"200"), err
    assert again.status_code == 200
