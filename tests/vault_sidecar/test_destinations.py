"""Private, metadata and IPv4-embedding destinations refused by the running proxy; no rebinding."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import httpx
import pytest

from paddock_testing.vault import (
    GITHUB_STUB,
    Pki,
    Resolver,
    StartVault,
    Upstream,
    require,
    serve,
    tunnel,
)

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
    refused = f"destination {ipaddress.ip_address(address)} is refused"
    # The CONNECT is refused before the tunnel opens, with the reason.
    with pytest.raises(ConnectionRefusedError, match=f"(?s)^HTTP/1.1 403 .*{refused}"):
        await tunnel(vault.proxy_port, f"api.github.test:{upstream.port}", context=None)
    async with vault.client() as client:
        # Explicit proxy requests for plain HTTP take the same path.
        plain = await client.get(f"http://api.github.test:{upstream.port}/")
    assert plain.status_code == 403
    assert refused in plain.text
    assert vault.dials.attempts == []
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("api.github.test", "destination 10.0.0.1 is refused: private address"),
        ("evil.test", "evil.test is not an allowed destination"),
        ("allowed.test:22", "port 22 is not allowed"),
    ],
)
async def test_curl_reads_a_refused_connect_as_403(
    start_vault: StartVault, upstream: Upstream, host: str, why: str
) -> None:
    require("curl")
    vault = await start_vault(
        ports=[upstream.port], resolver=Resolver({"api.github.test": [["10.0.0.1"]]})
    )
    url = f"https://{host if ':' in host else f'{host}:{upstream.port}'}/"
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-v", "--max-time", "10", "--proxy", vault.proxy_url,
        "--cacert", str(vault.certs.agent_ca_file), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await proc.communicate()
    said = err.decode()
    assert "CONNECT tunnel failed, response 403" in said
    assert "SSL_ERROR_SYSCALL" not in said
    # curl prints no body of a proxy's answer; the reason is in it, for clients that show it.
    with pytest.raises(ConnectionRefusedError, match=why):
        await tunnel(vault.proxy_port, url.removeprefix("https://").rstrip("/"), context=None)
    assert vault.dials.attempts == []


async def test_ip_literal_destinations_refused(start_vault: StartVault, upstream: Upstream) -> None:
    vault = await start_vault(ports=[upstream.port])
    async with vault.client() as client:
        for target in ("127.0.0.1", "[::ffff:127.0.0.1]", "169.254.169.254"):
            with pytest.raises(httpx.ProxyError, match=r"40[03]"):
                await client.get(f"https://{target}:{upstream.port}/")
    assert vault.dials.attempts == []


@pytest.mark.parametrize("alias", ["2130706433", "0x7f.1", "017700000001", "127.1", "0x7f000001"])
async def test_a_numeric_host_is_an_ip_literal_even_when_listed_as_allowed(
    start_vault: StartVault, upstream: Upstream, certs: Pki, tmp_path: Path, alias: str
) -> None:
    # The resolver reads each alias as 127.0.0.1; listing it must not make that address allowed.
    config = certs.write_config(tmp_path / "numeric", egress_allow=[alias])
    vault = await start_vault(ports=[upstream.port], config_file=config)
    with pytest.raises(ConnectionRefusedError, match="403"):
        await tunnel(vault.proxy_port, f"{alias}:{upstream.port}", context=None)
    async with vault.client() as client:
        plain = await client.get(f"http://{alias}:{upstream.port}/")
    assert plain.status_code == 403
    assert "127.0.0.1 is not an allowed destination" in plain.text
    assert vault.dials.attempts == []
    assert vault.resolver.asked == {}


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
        for authority in (f"api.github.test:{private.port}", f"api.other.test:{upstream.port}"):
            with pytest.raises(
                ConnectionRefusedError, match=r"(?s)^HTTP/1.1 403 .*127\.0\.0\.2 is refused"
            ):
                await tunnel(vault.proxy_port, authority, context=None)
        assert private.seen == []
        assert all(host == "127.0.0.1" for host, _ in vault.dials.attempts)
