"""The destination is the host connected to: CONNECT authority, SNI and Host must all agree."""

from __future__ import annotations

import ssl

import pytest

from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB, RunningVault, Upstream, exchange, tunnel

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_host_header_mismatch_refused(vault: RunningVault, upstream: Upstream) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    reply = await exchange(
        reader,
        writer,
        f"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\nAuthorization: Bearer {GITHUB_STUB}\r\n\r\n".encode(),
    )
    assert reply.startswith(b"HTTP/1.1 421 ")
    assert b"does not match the connection's destination" in reply
    assert upstream.seen == []
    assert vault.dials.attempts == []


async def test_absolute_target_mismatch_refused(vault: RunningVault, upstream: Upstream) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    request = (
        f"GET https://api.other.test:{upstream.port}/ HTTP/1.1\r\n"
        f"Host: api.github.test:{upstream.port}\r\nAuthorization: Bearer {GITHUB_STUB}\r\n\r\n"
    )
    reply = await exchange(reader, writer, request.encode())
    assert reply.startswith(b"HTTP/1.1 421 ")
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("connect", "sni"),
    [
        ("allowed.test", "api.github.test"),  # a tunnel-only host, a credential's host inside
        ("api.github.test", "api.other.test"),  # one credential's host, another's inside
    ],
)
async def test_sni_mismatch_refused(
    vault: RunningVault, upstream: Upstream, connect: str, sni: str
) -> None:
    context = vault.certs.agent_context()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await tunnel(
            vault.proxy_port, f"{connect}:{upstream.port}", context=context, server_name=sni
        )
    assert upstream.seen == []
    assert vault.dials.attempts == []


async def test_host_port_mismatch_refused(vault: RunningVault, upstream: Upstream) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    reply = await exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: api.github.test:1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 421 ")


async def test_matching_spellings_accepted(vault: RunningVault, upstream: Upstream) -> None:
    # Case, a trailing dot and the port in Host all name the same destination.
    reader, writer = await tunnel(
        vault.proxy_port,
        f"API.GitHub.test.:{upstream.port}",
        context=vault.certs.agent_context(),
        server_name="api.github.test",
    )
    request = (
        f"GET /ok HTTP/1.1\r\nHost: Api.Github.Test.:{upstream.port}\r\n"
        f"Authorization: Bearer {GITHUB_STUB}\r\nConnection: close\r\n\r\n"
    )
    reply = await exchange(reader, writer, request.encode())
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert upstream.seen[0].header(b"authorization") == f"Bearer {GITHUB_REAL}".encode()


async def test_punycode_host_swaps(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        response = await client.get(f"https://bücher.test:{upstream.port}/")
    assert response.status_code == 200
    assert upstream.seen[0].header(b"x-api-key") is not None
