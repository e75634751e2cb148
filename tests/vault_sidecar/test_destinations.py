"""Private, metadata and IPv4-embedding destinations refused by the running proxy; no rebinding."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from paddock_testing.vault import GITHUB_STUB, Pki, Resolver, StartVault, Upstream, serve

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "127.0.0.2", "100.64.0.1", "fe80::1",
     "64:ff9b::7f00:1", "::1"],
)  # fmt: skip
async def test_private_destinations_refused(
    start_vault: StartVault, upstream: Upstream, address: str
) -> None:
    vault = await start_vault(
        ports=[upstream.port], resolver=Resolver({"api.github.test": [[address]]})
    )
    async with vault.client() as client:
        response = await client.get(
            f"https://api.github.test:{upstream.port}/", headers={"Authorization": GITHUB_STUB}
        )
        # Explicit proxy requests for plain HTTP take the same path.
        plain = await client.get(f"http://api.github.test:{upstream.port}/")
    assert response.status_code == plain.status_code == 403
    assert f"destination {ipaddress.ip_address(address)} is refused" in response.text
    assert vault.dials.attempts == []
    assert upstream.seen == []


async def test_ip_literal_destinations_refused(start_vault: StartVault, upstream: Upstream) -> None:
    vault = await start_vault(ports=[upstream.port])
    async with vault.client() as client:
        for target in ("127.0.0.1", "[::ffff:127.0.0.1]", "169.254.169.254"):
            with pytest.raises(httpx.ProxyError, match=r"40[03]"):
                await client.get(f"https://{target}:{upstream.port}/")
    assert vault.dials.attempts == []


async def test_resolver_answering_public_then_private_refused(
    start_vault: StartVault, upstream: Upstream, certs: Pki
) -> None:
    # 127.0.0.1 stands for "public" (the test allow list), 127.0.0.2 for a private address,
    # where a second real server counts any connection it gets.
    cert, key = certs.server_files(["api.github.test"])
    async with serve(Upstream(), cert, key, host="127.0.0.2") as private:
        answers = {"api.github.test": [["127.0.0.1"], ["127.0.0.2"]]}
        mixed = {"api.other.test": [["127.0.0.1", "127.0.0.2"]]}
        vault = await start_vault(
            ports=[upstream.port, private.port], resolver=Resolver(answers | mixed)
        )
        async with vault.client() as client:
            first = await client.get(
                f"https://api.github.test:{upstream.port}/", headers={"Authorization": GITHUB_STUB}
            )
            assert first.status_code == 200
        async with vault.client() as client:
            second = await client.get(f"https://api.github.test:{private.port}/")
            both = await client.get(f"https://api.other.test:{upstream.port}/")
        assert second.status_code == both.status_code == 403
        assert "127.0.0.2 is refused" in second.text
        assert "127.0.0.2 is refused" in both.text
        assert private.seen == []
        assert all(host == "127.0.0.1" for host, _ in vault.dials.attempts)
