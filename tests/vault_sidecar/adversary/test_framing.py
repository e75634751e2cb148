"""Channel 1: how and when a response arrives never says whether echoed bytes start a real value.

The attack: send a guess at the start of a real value, have the reflector echo it and pause before
sending the rest. A scrubber that holds back only a tail that could begin a value delays a right
guess until after the pause and lets a wrong one through at once, so the next byte is found in a
few dozen requests. Each test compares right guesses with wrong ones of the same length (the same
prefix, another last byte), interleaved, with a fixed seed.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from paddock_testing.vault import GITHUB_REAL, REAL_VALUES
from paddock_vault.scrub import MIN_FRAGMENT

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

SAMPLES = 24
PAUSE_MS = 100


def _mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, ties averaged)."""
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks: list[float] = [0.0] * len(ranked)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(a), len(b)
    u = (
        sum(r for r, (_, group) in zip(ranks, ranked, strict=True) if group == 0)
        - n1 * (n1 + 1) / 2
    )
    mean, sd = n1 * n2 / 2, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    z = abs(u - mean) / sd
    return math.erfc(z / math.sqrt(2))


def _guess_pairs(seed: int) -> list[tuple[bytes, bytes]]:
    """(a right guess, a wrong one of the same length) for random lengths."""
    rng = random.Random(seed)  # noqa: S311 - a fixed sample, not a secret
    real = GITHUB_REAL.encode()
    pairs = []
    for _ in range(SAMPLES):
        k = rng.randint(3, len(real) - 2)
        wrong_last = rng.choice(
            [c for c in b"abcdefghijklmnopqrstuvwxyz0123456789" if c != real[k - 1]]
        )
        pairs.append((real[:k], real[: k - 1] + bytes([wrong_last])))
    return pairs


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_right_guess_arrives_like_a_wrong_one(
    attacker: Any, stub_header: dict[str, str], framing: str
) -> None:
    seen: dict[bool, list[Any]] = {True: [], False: []}
    for right, wrong in _guess_pairs(seed=7):
        for is_right, guess in ((True, right), (False, wrong)):
            body = guess + b"\n|after the pause"
            target = f"/echo?framing={framing}&split={len(guess)}&pause={PAUSE_MS}"
            response = await attacker.send(target, headers=stub_header, body=body)
            assert response.status == 200
            assert response.complete
            assert all(r.encode().lower() not in response.body.lower() for r in REAL_VALUES)
            seen[is_right].append((response, guess))

    # What comes back is the same for a right and a wrong guess (each guess in its place),
    # except for the one byte the masker's rule lets a guesser confirm: whether the first
    # MIN_FRAGMENT bytes are right (a right guess of exactly that length is masked).
    for (right, right_guess), (wrong, wrong_guess) in zip(seen[True], seen[False], strict=True):
        k = len(right_guess)
        if k == MIN_FRAGMENT:
            assert right_guess not in right.body
            assert wrong_guess in wrong.body
            continue
        blank = b"#" * k
        assert right.body.replace(right_guess, blank) == wrong.body.replace(wrong_guess, blank)

    def before_pause(group: bool) -> list[bool]:
        """Whether the guess was whole in a read before the one bringing what followed the pause."""
        early = []
        for r, _guess in seen[group]:
            end = r.body.index(b"\n|after the pause") - 1  # the guess's last byte, masked or not
            early.append(r.arrival[end] < r.arrival[end + 1])
        return early

    # On a loaded machine the quiet timer can fire after the pause now and then, for either guess.
    early_right, early_wrong = before_pause(True), before_pause(False)
    assert abs(sum(early_right) - sum(early_wrong)) <= 3, (early_right, early_wrong)
    assert sum(early_right) >= SAMPLES * 3 // 4, "held bytes waited for the upstream, not the timer"

    if framing == "chunked":
        # Right and wrong guesses of a pair have the same length: the same chunks, byte for byte.
        differ = [
            (a.chunks, b.chunks)
            for (a, _), (b, _) in zip(seen[True], seen[False], strict=True)
            if a.chunks != b.chunks
        ]
        assert len(differ) <= 2, differ

    def visible(group: bool) -> list[float]:
        return [r.arrival[r.body.index(b"\n|after the pause") - 1] for r, _ in seen[group]]

    times_right, times_wrong = visible(True), visible(False)
    p = _mann_whitney_p(times_right, times_wrong)
    assert p > 1e-3, f"timing tells right from wrong (p={p:.2g}): {times_right} vs {times_wrong}"
