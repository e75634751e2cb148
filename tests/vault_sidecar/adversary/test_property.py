"""The property: whatever an allowed server answers, the agent never gets a real value.

For any response body (real values in any letter case, their encodings, starts of them, noise),
cut anywhere, paused anywhere (so the quiet timer releases held bytes mid-value), framed any way and
in any encoding the vault decodes, the bytes the agent receives hold no real value, nor its first
MIN_FRAGMENT bytes, in any letter case or spelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paddock_testing.background import Background, background
from paddock_testing.vault import (
    GITHUB_STUB,
    REAL_VALUES,
    UPSTREAM_NAMES,
    Dials,
    Pki,
    Resolver,
    RunningVault,
    vault_for_tests,
)
from paddock_vault import scrub
from paddock_vault.app import Vault
from paddock_vault.scrub import MIN_FRAGMENT, Masker, Secrets

REALS = [r.encode() for r in REAL_VALUES]


def _cased(value: bytes, seed: int) -> bytes:
    rng = random.Random(seed)  # noqa: S311 - letter case for a test, not a secret
    return bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in value)


@st.composite
def _piece(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["noise", "value", "start", "form"]))
    value = draw(st.sampled_from(REALS))
    if kind == "noise":
        return draw(st.binary(max_size=24))
    if kind == "value":
        return _cased(value, draw(st.integers(0, 99)))
    if kind == "start":
        return _cased(value[: draw(st.integers(1, len(value)))], draw(st.integers(0, 99)))
    return draw(st.sampled_from(scrub.forms(value)))


_body = st.lists(_piece(), max_size=8).map(b"".join)


def _assert_nothing_learned(out: bytes) -> None:
    """No value, nor MIN_FRAGMENT of its first bytes, in any case or spelling, is in out."""
    low = out.lower()
    for value in REALS:
        assert value.lower()[:MIN_FRAGMENT] not in low, (value, out)
        for text, need in scrub.spellings(value)[1:]:
            assert text.lower()[:need] not in low, (text, out)


@pytest.mark.unit
@settings(max_examples=400, deadline=None)
@given(
    body=_body,
    cuts=st.lists(st.tuples(st.integers(0, 400), st.booleans()), max_size=10),
)
def test_the_masker_lets_no_value_through_however_the_stream_is_cut_or_timed(
    body: bytes, cuts: list[tuple[int, bool]]
) -> None:
    masker = Masker(Secrets(REALS))
    out, start = b"", 0
    for cut, timer_fires in sorted((c, t) for c, t in cuts if c <= len(body)):
        out += masker.feed(body[start:cut])
        start = cut
        if timer_fires:
            out += masker.release()
    out += masker.feed(body[start:]) + masker.release()
    assert len(out) == len(body)
    _assert_nothing_learned(out)


# --- the same through a real vault and a real server ------------------------------------------


@dataclass
class Live:
    vault: Vault
    reflector: Any
    attacker: Any


@contextlib.asynccontextmanager
async def _vault_and_reflector(certs: Pki, work: Path, kit: Any) -> AsyncIterator[Live]:
    cert, key = certs.server_files(UPSTREAM_NAMES)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    reflector = kit.Reflector(context)
    listener = await asyncio.start_server(reflector.handle, "127.0.0.1", 0, ssl=context)
    reflector.port = listener.sockets[0].getsockname()[1]
    config, resolver, dials = certs.write_config(work), Resolver(), Dials()
    vault = vault_for_tests(certs, config, ports=[reflector.port], resolver=resolver, dialer=dials)
    async with listener, vault:
        running = RunningVault(vault, resolver, dials, config, certs)
        yield Live(vault, reflector, kit.Attacker(running, reflector.port))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, kit: Any) -> Iterator[Background[Live]]:
    """A vault in front of the reflector, on an event loop in another thread."""
    work = tmp_path_factory.mktemp("property")
    certs = Pki.create(work)
    with background(lambda: _vault_and_reflector(certs, work, kit)) as running:
        yield running


@pytest.mark.integration
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_body,
    cuts=st.lists(st.tuples(st.integers(0, 300), st.sampled_from([0.0, 0.0, 0.004])), max_size=5),
    framing=st.sampled_from(["chunked", "length", "close"]),
    encoding=st.sampled_from(["identity", "gzip", "gzip-members", "deflate", "deflate-raw"]),
    sent=st.integers(0, len(REALS[0])),
)
def test_the_agent_learns_nothing_from_any_response(  # noqa: PLR0917 - hypothesis arguments
    live: Background[Live],
    kit: Any,
    body: bytes,
    cuts: list[tuple[int, float]],
    framing: str,
    encoding: str,
    sent: int,
) -> None:
    pieces, start = [], 0
    for cut, pause in sorted((c, p) for c, p in cuts if c <= len(body)):
        pieces.append((pause, body[start:cut]))
        start = cut
    pieces.append((0.0, body[start:]))
    headers, pieces = kit.encoded(encoding, pieces)
    live.value.reflector.script("/property", kit.Script(headers, pieces, framing))
    # The agent sends a start of a real value of its own (a right guess) with the stub: it is
    # masked in the echo like any other (an agent learns nothing from an echo being masked but
    # whether its first MIN_FRAGMENT bytes were right).
    response = live.run(
        live.value.attacker.send(
            "/property",
            headers={"Authorization": f"Bearer {GITHUB_STUB}"},
            body=b"guess=" + REALS[0][:sent],
        )
    )
    assert response.status == 200, response.head
    assert response.complete
    assert len(response.body) == len(body)
    _assert_nothing_learned(response.head + response.body)
