"""An upstream certificate that does not verify: 502, and the secret never leaves."""

from __future__ import annotations

import datetime as dt

import pytest

from paddock import pki
from paddock_testing.vault import GITHUB_STUB, Pki, StartVault, Upstream, serve

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.mark.parametrize("problem", ["unknown CA", "wrong name", "expired"])
async def test_unverified_upstream_gives_502_and_no_secret(
    start_vault: StartVault, certs: Pki, problem: str
) -> None:
    if problem == "unknown CA":
        cert, key = certs.server_files(["api.github.test"], ca=pki.new_ca("attacker"))
    elif problem == "wrong name":
        cert, key = certs.server_files(["api.other.test"])
    else:
        leaf = pki.issue(certs.public_ca, ["api.github.test"], lifetime=-dt.timedelta(minutes=1))
        cert, key = certs.dir / "expired.crt", certs.dir / "expired.key"
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
    async with serve(Upstream(), cert, key) as bad:
        vault = await start_vault(ports=[bad.port])
        async with vault.client() as client:
            response = await client.get(
                f"https://api.github.test:{bad.port}/",
                headers={"Authorization": f"Bearer {GITHUB_STUB}"},
            )
    assert response.status_code == 502
    assert "certificate does not verify" in response.text
    assert bad.seen == []
