"""A Secret rotation takes effect without a restart and without dropping connections."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB, RunningVault, Upstream

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROTATED = "ghp_ROTATEDgithubSECRETvalue0009"


async def test_secret_rotation_without_restart(vault: RunningVault, upstream: Upstream) -> None:
    url = f"https://api.github.test:{upstream.port}/rotate"
    headers = {"Authorization": f"Bearer {GITHUB_STUB}"}
    async with vault.client(limits=httpx.Limits(max_connections=1)) as client:
        first = await client.get(url, headers=headers)
        assert upstream.seen[-1].header(b"authorization") == f"Bearer {GITHUB_REAL}".encode()
        vault.write_value("GITHUB_TOKEN", ROTATED)
        async with asyncio.timeout(10):
            while upstream.seen[-1].header(b"authorization") != f"Bearer {ROTATED}".encode():
                await asyncio.sleep(0.05)
                last = await client.get(url, headers=headers)
    assert first.status_code == last.status_code == 200
    # One agent connection and one upstream connection carried every request.
    assert len({seen.client_port for seen in upstream.seen}) == 1
    assert len(vault.dials.attempts) == 1
    assert ROTATED not in last.text
    assert last.headers["x-echo-authorization"] == f"Bearer {GITHUB_STUB}"


async def test_broken_config_keeps_the_previous_one(
    vault: RunningVault, upstream: Upstream
) -> None:
    reloads = vault.vault.ctx.metrics.reloads
    vault.config_file.write_text("{not json")
    async with asyncio.timeout(10):  # until the vault has read the broken file
        while not reloads[(("result", "error"),)]:  # noqa: ASYNC110 - a counter, not an event
            await asyncio.sleep(0.05)
    async with vault.client() as client:
        response = await client.get(
            f"https://api.github.test:{upstream.port}/",
            headers={"Authorization": f"Bearer {GITHUB_STUB}"},
        )
    assert response.status_code == 200
    assert upstream.seen[0].header(b"authorization") == f"Bearer {GITHUB_REAL}".encode()
    assert vault.vault.ctx.metrics.reloads[(("result", "error"),)] == 1
