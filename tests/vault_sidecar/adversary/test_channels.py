"""Channels 2-4: partial responses, header names, the vault's own words, encodings.

Each test has the reflector hand back a real value (which the vault itself put into the request)
in a way a scrubber that only looks for the exact value in the body would miss.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB, REAL_VALUES
from paddock_vault import scrub

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REAL = GITHUB_REAL.encode()


def _fragments(data: bytes, value: bytes = REAL) -> list[bytes]:
    """Every start of value at least MIN_FRAGMENT long in data, in any letter case."""
    low, value = data.lower(), value.lower()
    return [value[:n] for n in range(scrub.MIN_FRAGMENT, len(value) + 1) if value[:n] in low]


def _leaks(data: bytes) -> list[bytes]:
    """Any real value (any case) or any long start of one in data."""
    return [r.encode() for r in REAL_VALUES if r.encode().lower() in data.lower()] + _fragments(
        data
    )


# -- 2. Partial responses ------------------------------------------------------------------


async def test_range_is_not_forwarded_so_no_piece_stops_inside_a_value(
    attacker: Any, reflector: Any, stub_header: dict[str, str]
) -> None:
    whole = await attacker.send("/echo", headers=stub_header)
    at = whole.body.find(b"*" * len(REAL))
    assert at > 0, whole.body
    # Ask for the bytes that end halfway through the value, and for its middle.
    for first, last in ((0, at + len(REAL) // 2), (at + 4, at + len(REAL) - 4)):
        piece = await attacker.send(
            "/echo", headers={**stub_header, "Range": f"bytes={first}-{last}"}
        )
        assert piece.status == 200, piece.head
        assert not _leaks(piece.body)
        assert REAL[4:-4] not in piece.body
    assert all(b"range:" not in seen.lower() for seen in reflector.seen)


async def test_a_206_the_vault_never_asked_for_is_refused(
    attacker: Any, stub_header: dict[str, str]
) -> None:
    response = await attacker.send("/echo?status=206", headers=stub_header)
    assert response.status == 502
    assert b"206" in response.body
    assert not _leaks(response.body)


# -- 3. Header names, reason phrases, the vault's own words, its logs ----------------------


async def test_a_value_reflected_into_a_header_name_is_replaced(
    attacker: Any, stub_header: dict[str, str]
) -> None:
    response = await attacker.send("/echo?names=1", headers={"X-Token": GITHUB_STUB, **stub_header})
    assert response.status == 200
    assert not _leaks(response.head)
    assert f"X-Seen-{GITHUB_STUB}".encode() in response.head


async def test_the_vaults_error_text_never_quotes_a_value_in_any_case(
    attacker: Any, stub_header: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The reflector names the lower-cased real value as its Content-Encoding: the vault refuses
    # it, and its refusal (to the agent, in the audit log) quotes the upstream's header.
    target = f"/echo?encoding={GITHUB_REAL.lower()}"
    response = await attacker.send(target, headers=stub_header)
    assert response.status == 502
    assert b"Content-Encoding" in response.body
    assert not _leaks(response.head + response.body)
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records).encode()
    assert b"Content-Encoding" in logged
    assert not _leaks(logged)


async def test_log_lines_quoting_a_value_are_masked_whoever_writes_them(
    attacker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await attacker.send("/echo")  # the vault is running, so its redaction is in place
    logging.getLogger("some.library").warning("peer said %s", GITHUB_REAL.upper())
    try:
        raise ValueError(f"bad token {GITHUB_REAL[:12]}...")
    except ValueError:
        logging.getLogger("asyncio").exception("callback failed")
    text = caplog.text.encode()
    assert b"peer said" in text
    assert b"callback failed" in text
    assert not _leaks(text)


async def test_log_lines_are_masked_for_handlers_added_later_and_loggers_that_keep_to_themselves(
    attacker: Any,
) -> None:
    await attacker.send("/echo")
    caught: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(self.format(record))

    quiet = logging.getLogger("a.library.of.its.own")
    quiet.propagate = False
    quiet.addHandler(Catch())
    try:
        quiet.error("token was %s", GITHUB_REAL.lower())
    finally:
        quiet.handlers.clear()
    assert caught == ["token was " + "*" * len(GITHUB_REAL)]


# -- 4. Encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "gzip-members", "deflate", "deflate-raw"])
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_every_encoding_http_allows_is_decoded_whole_and_masked(
    attacker: Any, stub_header: dict[str, str], encoding: str, framing: str
) -> None:
    body = b"the end of the body is here"
    # split in the body: gzip-members puts the value's half and the rest in separate members.
    target = f"/echo?encoding={encoding}&framing={framing}&split=3&pause=5"
    response = await attacker.send(target, headers=stub_header, body=body)
    assert response.status == 200
    assert response.complete
    assert response.body.endswith(body), response.body[-80:]
    assert b"*" * len(REAL) in response.body
    assert not _leaks(response.body)


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip%2C%20gzip"])
async def test_an_encoding_the_vault_cannot_decode_is_a_clear_502(
    attacker: Any, stub_header: dict[str, str], encoding: str
) -> None:
    response = await attacker.send(f"/echo?encoding={encoding}", headers=stub_header)
    assert response.status == 502
    assert b"cannot scrub" in response.body


async def test_a_body_that_stops_decoding_halfway_is_cut_off_not_ended(
    attacker: Any, stub_header: dict[str, str]
) -> None:
    response = await attacker.send(
        "/echo?encoding=gzip-corrupt&framing=close&pause=5", headers=stub_header
    )
    assert response.status == 200
    assert not response.complete
    assert not _leaks(response.body)


@pytest.mark.parametrize("escape", ["percent", "json"])
async def test_a_value_reflected_percent_or_unicode_escaped_is_masked(
    attacker: Any, stub_header: dict[str, str], escape: str
) -> None:
    response = await attacker.send(f"/echo?escape={escape}", headers=stub_header)
    assert response.status == 200
    unit = 3 if escape == "percent" else 6
    assert b"*" * (unit * len(REAL)) in response.body
    for form in scrub.forms(REAL)[1:3]:
        assert form.lower() not in response.body.lower()


async def test_a_reflected_basic_credential_is_masked(attacker: Any) -> None:

    basic = base64.b64encode(f"x-access-token:{GITHUB_STUB}".encode()).decode()
    response = await attacker.send("/echo", headers={"Authorization": f"Basic {basic}"})
    assert response.status == 200
    sent = base64.b64encode(b"x-access-token:" + REAL)
    assert sent not in response.body
    assert all(core not in response.body for core in scrub.forms(REAL)[3:])
