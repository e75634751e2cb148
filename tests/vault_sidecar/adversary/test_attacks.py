"""Attacks found by reviewing the response path as an attacker, each kept as a test.

Both have the reflector cut its echo inside the real value the vault itself swapped into the
request, so that the quiet timer lets out the bytes held before the cut.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB
from paddock_vault import scrub
from paddock_vault.scrub import MIN_FRAGMENT

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

REAL = GITHUB_REAL.encode()


async def _split_inside(
    attacker: Any, reflector: Any, headers: dict[str, str], piece: bytes, at: int
) -> int:
    """The reflector's split offset (from the end of the echoed head) that cuts piece after at."""
    await attacker.send("/echo", headers=headers)
    echoed = reflector.seen[-1]
    head = echoed[: echoed.index(b"\r\n\r\n") + 4]
    return head.index(piece) + at - len(head)


async def test_a_base64_value_cut_by_the_server_is_masked(attacker: Any, reflector: Any) -> None:
    # The vault re-encodes a Basic credential with the real value in it; the reflector echoes it
    # and pauses just before the last character of the value's base64, so the held bytes leave
    # on the quiet timer before the whole spelling is there to be recognised.
    basic = base64.b64encode(f"x-access-token:{GITHUB_STUB}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    core = scrub.forms(REAL)[3]  # "x-access-token:" is 15 bytes: the value starts aligned
    split = await _split_inside(attacker, reflector, headers, core, len(core) - 1)
    response = await attacker.send(f"/echo?split={split}&pause=50", headers=headers)
    assert response.status == 200
    shown = max(n for n in range(len(core) + 1) if core[:n] in response.body)
    assert shown * 6 // 8 < MIN_FRAGMENT, base64.b64decode(core[: shown // 4 * 4])


@pytest.mark.parametrize("at", [MIN_FRAGMENT + 1, len(REAL) - 1])
async def test_a_right_guess_does_not_unmask_the_value_cut_at_the_same_place(
    attacker: Any, reflector: Any, at: int
) -> None:
    # A masker that let through starts of a value the agent itself sent would show the cut value
    # only when the guess sent beside it is right: here a right and a wrong guess get the same.
    headers = {"Authorization": f"Bearer {GITHUB_STUB}"}
    split = await _split_inside(attacker, reflector, headers, REAL, at)
    bodies = []
    for guess in (REAL[:at], REAL[: at - 1] + b"#"):
        response = await attacker.send(
            f"/echo?split={split}&pause=50", headers=headers, body=b"guess=" + guess
        )
        assert response.status == 200
        bodies.append(response.body[: response.body.index(b"\r\n\r\n")])  # the echoed head
    assert bodies[0] == bodies[1]
    assert all(REAL[:MIN_FRAGMENT] not in body for body in bodies)
