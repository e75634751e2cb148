"""Request smuggling refused: ambiguous framing never reaches the upstream server."""

from __future__ import annotations

import pytest

from paddock_testing.vault import GITHUB_STUB, RunningVault, Upstream, exchange, tunnel
from paddock_vault.errors import RequestError
from paddock_vault.framing import check_request_head

pytestmark = pytest.mark.integration

HEAD = "POST /x HTTP/1.1\r\nHost: api.github.test\r\nAuthorization: Bearer " + GITHUB_STUB + "\r\n"
SMUGGLED = "GET /admin HTTP/1.1\r\nHost: api.github.test\r\n\r\n"

CASES = {
    "cl_te": "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_cl": "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "bad_cl": "Content-Length: 4x\r\n\r\nabcd",
    "signed_cl": "Content-Length: +4\r\n\r\nabcd",
    "two_cl": "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "list_cl": "Content-Length: 4, 4\r\n\r\nabcd",
    "chunKed": "Transfer-Encoding: chunKed\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_list": "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "two_te": "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_space": "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": "Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n",
    "bare_lf": "Content-Length: 0\nX: y\r\n\r\n",
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES)
async def test_smuggling_refused(vault: RunningVault, upstream: Upstream, case: str) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    head = HEAD.replace("api.github.test", f"api.github.test:{upstream.port}")
    reply = await exchange(reader, writer, (head + CASES[case]).encode())
    assert reply.split(b"\r\n", 1)[0] in (
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 501 Not Implemented",
    )
    assert reply.count(b"HTTP/1.1") == 1  # nothing after the refusal: the connection closed
    assert upstream.seen == []


@pytest.mark.unit
def test_clean_heads_pass() -> None:
    check_request_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
    check_request_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")


@pytest.mark.unit
def test_chunked_needs_http_11() -> None:
    with pytest.raises(RequestError):
        check_request_head(b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")


@pytest.mark.asyncio
async def test_chunked_body_with_odd_boundaries_passes(
    vault: RunningVault, upstream: Upstream
) -> None:
    reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    head = HEAD.replace("api.github.test", f"api.github.test:{upstream.port}")
    body = (
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n1;x=y\r\nd\r\n0\r\n\r\n"
    )
    reply = await exchange(reader, writer, (head + body).encode())
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert upstream.seen[0].body == b"abcd"
