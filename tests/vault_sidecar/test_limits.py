"""Limits hold: ports, loops, sizes, timeouts, and what is not HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl

import httpx
import pytest

from paddock_testing.vault import (
    GITHUB_STUB,
    Pki,
    Resolver,
    RunningVault,
    StartVault,
    Upstream,
    exchange,
    tunnel,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_connect_to_other_ports_refused(vault: RunningVault, upstream: Upstream) -> None:
    with pytest.raises(ConnectionRefusedError, match="403"):
        await tunnel(vault.proxy_port, "api.github.test:22", context=None)
    assert vault.dials.attempts == []


async def test_plain_proxy_request_to_other_ports_refused(
    vault: RunningVault, upstream: Upstream
) -> None:
    async with vault.client() as client:
        response = await client.get("http://allowed.test:22/")
    assert response.status_code == 403
    assert "port 22 is not allowed" in response.text
    assert vault.dials.attempts == []


async def test_loop_back_into_the_vault_refused(
    start_vault: StartVault, upstream: Upstream
) -> None:
    vault = await start_vault(ports=[upstream.port, 0])
    proxy_port = vault.proxy_port
    # Allow the vault's own port, as a misconfiguration might: the guard still sees a loop.
    vault.vault.settings.allowed_ports.append(proxy_port)
    with pytest.raises(ConnectionRefusedError, match=r"(?s)^HTTP/1.1 403 .*loop back into"):
        await tunnel(vault.proxy_port, f"api.github.test:{proxy_port}", context=None)
    assert vault.dials.attempts == []


async def test_loop_back_into_the_vault_through_its_own_address_refused(
    start_vault: StartVault, upstream: Upstream, own: ipaddress.IPv4Address
) -> None:
    # The admin port listens on every address, as in a Pod: the Pod's own IP on it is a loop too.
    vault = await start_vault(
        ports=[upstream.port],
        admin_host="0.0.0.0",  # noqa: S104
        unsafe_allow_cidrs=["127.0.0.1/32", f"{own}/32"],
        resolver=Resolver({"api.github.test": [[own]]}),
    )
    admin_port = vault.vault.address("admin")[1]
    vault.vault.settings.allowed_ports.append(admin_port)
    with pytest.raises(ConnectionRefusedError, match=f"{own} is refused: a loop back into"):
        await tunnel(vault.proxy_port, f"api.github.test:{admin_port}", context=None)
    assert vault.dials.attempts == []


async def test_non_http_in_tunnel_refused(vault: RunningVault, upstream: Upstream) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=None
    )
    reply = await exchange(reader, writer, b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert vault.dials.attempts == []


async def test_header_too_large(vault: RunningVault, upstream: Upstream) -> None:
    async with vault.client() as client:
        response = await client.get(
            f"https://api.github.test:{upstream.port}/", headers={"X-Big": "a" * 70_000}
        )
    assert response.status_code == 431
    assert upstream.seen == []


async def test_body_too_large(start_vault: StartVault, upstream: Upstream) -> None:
    vault = await start_vault(ports=[upstream.port], max_body_bytes=100_000)
    async with vault.client() as client:
        response = await client.post(
            f"https://api.github.test:{upstream.port}/upload", content=b"x" * 300_000
        )
    assert response.status_code == 413


async def test_slow_request_head_times_out(start_vault: StartVault, upstream: Upstream) -> None:
    vault = await start_vault(ports=[upstream.port], header_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", vault.proxy_port)
    writer.write(b"CONNECT api.github.test:")
    async with asyncio.timeout(5):
        reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert vault.dials.attempts == []


@pytest.mark.parametrize("first", [True, False], ids=["first request", "keep-alive request"])
async def test_trickled_request_head_gets_408_within_the_deadline(
    start_vault: StartVault, upstream: Upstream, first: bool
) -> None:
    vault = await start_vault(ports=[upstream.port], header_timeout=1.0)
    host = f"api.github.test:{upstream.port}"
    if first:  # the connection's first request: a plain proxy request
        reader, writer = await asyncio.open_connection("127.0.0.1", vault.proxy_port)
        head = f"GET http://{host}/slow HTTP/1.1\r\nHost: {host}\r\n"
    else:  # the next request on a kept-alive connection, inside a decrypted tunnel
        reader, writer = await tunnel(vault.proxy_port, host, context=vault.certs.agent_context())
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        response_head = await reader.readuntil(b"\r\n\r\n")
        assert response_head.startswith(b"HTTP/1.1 200 ")
        length = int(response_head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        head = f"GET /slow HTTP/1.1\r\nHost: {host}\r\n"
    head += f"X-Pad: {'a' * 400}\r\n\r\n"
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:
        # One byte every 20 ms: each read comes well inside the timeout, the whole head never.
        for byte in head.encode():
            writer.write(bytes([byte]))
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(5):
            reply = await reader.read(65536)
    finally:
        sender.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert loop.time() - started < 2.5  # the deadline (1 s), not the whole trickle (8 s)
    assert [seen.path for seen in upstream.seen] == ([] if first else ["/"])


async def test_allowed_host_is_tunnelled_without_decryption(
    vault: RunningVault, upstream: Upstream
) -> None:
    # allowed.test has no credential: the agent talks TLS with the real server (its public-CA
    # certificate, not a leaf of the Agent CA), so nothing is swapped and nothing is scrubbed.
    context = ssl.create_default_context(cafile=str(vault.certs.public_ca_file))
    async with vault.client(verify=context) as client:
        response = await client.get(
            f"https://allowed.test:{upstream.port}/", headers={"Authorization": GITHUB_STUB}
        )
    assert response.status_code == 200
    assert upstream.seen[0].header(b"authorization") == GITHUB_STUB.encode()
    assert vault.vault.ctx.metrics.leaves_minted == 0


async def test_tunnel_needs_a_resolvable_safe_address(
    start_vault: StartVault, upstream: Upstream
) -> None:
    vault = await start_vault(
        ports=[upstream.port], resolver=Resolver({"allowed.test": [["10.1.2.3"]]})
    )
    with pytest.raises(ConnectionRefusedError, match=r"(?s)^HTTP/1.1 403 .*private address"):
        await tunnel(vault.proxy_port, f"allowed.test:{upstream.port}", context=None)
    assert vault.dials.attempts == []


async def _raw_upstream(
    certs: Pki, start_vault: StartVault, answer: bytes | None, **settings: float
) -> tuple[int, list[bytes]]:
    """GET /x through the vault to a TLS server that answers raw bytes (None: never answers)."""
    cert, key = certs.server_files(["api.github.test"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    accepted: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(await reader.read(65536))
        if answer is None:
            await asyncio.sleep(10)
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        vault = await start_vault(ports=[port], **settings)
        async with vault.client() as client:
            response = await client.get(f"https://api.github.test:{port}/x")
        server.close()
    return response.status_code, accepted


async def test_silent_upstream_times_out(start_vault: StartVault, certs: Pki) -> None:
    status, accepted = await _raw_upstream(certs, start_vault, None, upstream_timeout=0.5)
    assert status == 504
    assert accepted[0].startswith(b"GET /x HTTP/1.1")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx",
        b"NOT HTTP\r\n\r\n",
    ],
)
async def test_responses_the_vault_cannot_scrub_give_502(
    start_vault: StartVault, certs: Pki, answer: bytes
) -> None:
    status, _accepted = await _raw_upstream(certs, start_vault, answer)
    assert status == 502


async def test_truncated_upstream_body_stays_truncated(start_vault: StartVault, certs: Pki) -> None:
    # The head already went to the agent; the vault closes rather than end the body cleanly.
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message"):
        await _raw_upstream(certs, start_vault, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")


async def test_pipelined_requests_are_not_parsed_as_requests(
    vault: RunningVault, upstream: Upstream
) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    host = f"Host: api.github.test:{upstream.port}\r\n"
    two = f"GET /one HTTP/1.1\r\n{host}\r\nGET /two HTTP/1.1\r\n{host}\r\n".encode()
    reply = await exchange(reader, writer, two)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in reply
    assert [seen.path for seen in upstream.seen] == ["/one"]
