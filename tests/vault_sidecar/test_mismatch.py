"""The destination is the host connected to: CONNECT authority, SNI and Host must all agree."""

from __future__ import annotations

import asyncio

import pytest

from paddock_testing.vault import (
    GITHUB_REAL,
    GITHUB_STUB,
    RunningVault,
    Upstream,
    exchange,
    require,
    tunnel,
)

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
    # The vault completes the handshake (a leaf for the name asked for) only to say no.
    reader, writer = await tunnel(
        vault.proxy_port,
        f"{connect}:{upstream.port}",
        context=vault.certs.agent_context(),
        server_name=sni,
    )
    request = f"GET / HTTP/1.1\r\nHost: {sni}\r\nAuthorization: Bearer {GITHUB_STUB}\r\n\r\n"
    reply = await exchange(reader, writer, request.encode())
    assert reply.startswith(b"HTTP/1.1 403 ")
    assert f"TLS server name {sni} does not match CONNECT {connect}".encode() in reply
    assert upstream.seen == []
    assert vault.dials.attempts == []


async def test_curl_reads_a_refused_tls_server_name_as_403(
    vault: RunningVault, upstream: Upstream
) -> None:
    require("curl")
    # CONNECT to an allowed host, then TLS that names another: curl speaks to evil.test
    # through a tunnel to allowed.test (--connect-to), as a client fooled by DNS would.
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", "--proxy", vault.proxy_url,
        "--cacert", str(vault.certs.agent_ca_file),
        "--connect-to", f"evil.test:{upstream.port}:allowed.test:{upstream.port}",
        f"https://evil.test:{upstream.port}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "SSL_ERROR_SYSCALL" not in err.decode()
    assert out.decode() == (
        "paddock vault: TLS server name evil.test does not match CONNECT allowed.test\n"
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
