"""The admin port: health, and Prometheus metrics that never hold a secret."""

from __future__ import annotations

import httpx
import pytest

from paddock_testing.vault import GITHUB_STUB, REAL_VALUES, RunningVault, Upstream

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_healthz_and_metrics(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        await client.get(
            f"https://api.github.test:{upstream.port}/", headers={"Authorization": GITHUB_STUB}
        )
        await client.get(
            f"https://api.other.test:{upstream.port}/", headers={"Authorization": GITHUB_STUB}
        )
    host, port = vault.vault.address("admin")
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as admin:
        health = await admin.get("/healthz")
        metrics = (await admin.get("/metrics")).text
    assert health.status_code == 200
    assert 'paddock_vault_requests_total{mode="explicit",outcome="forwarded"} 1' in metrics
    assert 'paddock_vault_blocks_total{mode="explicit",reason="credential_blocked"} 1' in metrics
    assert 'paddock_vault_request_duration_seconds_count{mode="explicit"} 1' in metrics
    assert 'paddock_vault_bytes_total{direction="upstream_received"}' in metrics
    assert GITHUB_STUB not in metrics
    assert not any(real in metrics for real in REAL_VALUES)
