"""Find secrets in byte streams cut anywhere, without the stream's shape depending on them.

Two jobs share the same rule for how bytes are held back:

- `Masker` (what reaches the agent): wherever the first `MIN_FRAGMENT` bytes of a real value
  appear, in any letter case or in one of its common encodings, the value's length from there
  (to the end of the line) becomes `*`, so lengths never change.
- `Guard` (request bodies): a stub or value that must not reach the destination raises
  ForbiddenError.

Why the hold-back is the same for every byte: a scrubber that holds back only a tail that *could*
begin a secret tells anyone who sees its output's framing or timing whether that tail is a prefix
of the secret, and an echoing server turns that into a byte-by-byte search. Here the last `hold`
bytes are always held, whatever they are, and released by the next chunk, the end of the stream or
the caller's timer (`release`), none of which looks at the content.

Why a match is the first MIN_FRAGMENT bytes and masks a fixed length: what is masked must depend on
the secret as little as possible, since the agent chooses much of what an echoing server sends
back. A rule that masked "as far as the bytes agree with the value" would say, byte by byte,
whether a guess goes on agreeing; a rule keyed to the first MIN_FRAGMENT bytes says only whether
those agree. So an agent can learn at most the first MIN_FRAGMENT bytes of a value: the part
below MIN_FRAGMENT is too short to mask (a server may cut a value there, and the next bytes are
masked by the match that goes on across the cut), and whether one more byte is right it can find
by trying each. A whole value is never let out, nor any longer start of one.

Known limit: a server that transforms what it reflects (reversed, sliced into pieces shorter than
MIN_FRAGMENT, encoded some other way) can always hide a value from any scrubber. The encodings
covered are the common ones: percent-encoding and JSON `\\u` escapes of every byte, and base64
(standard and URL-safe alphabets) at each alignment.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator

MIN_FRAGMENT = 8
"""How many first bytes of a real value make a match (and the most an agent can learn of one).

Shorter pieces are too common in ordinary text to mask, and reveal little of a random token: most
of them are a public prefix such as `ghp_` or `sk-`.
"""
_LINE_END = re.compile(rb"[\r\n]")
_SCREEN_BY_REGEX = 4096


class ForbiddenError(Exception):
    """A needle that must not pass was found; args[0] is the needle."""


def _base64_cores(value: bytes) -> Iterator[tuple[bytes, int]]:
    """(the part of base64(x + value + y) that is the same for any x of each length mod 3 and
    any y, how many of its first characters encode MIN_FRAGMENT bytes of value)."""
    for align in range(3):
        encoded = base64.b64encode(b"\0" * align + value)
        start, end = -(-8 * align // 6), 8 * (align + len(value)) // 6
        # Character k of the core holds bits from value byte (6 * (k + start) - 8 * align) // 8.
        need = -(-8 * (align + MIN_FRAGMENT) // 6) - start
        yield encoded[start:end], need


def spellings(value: bytes) -> list[tuple[bytes, int]]:
    """(a spelling of value, how many of its first bytes make a match)."""
    first = min(MIN_FRAGMENT, len(value))
    cores = list(_base64_cores(value))
    url = bytes.maketrans(b"+/", b"-_")
    return [
        (value, first),
        (b"".join(b"%%%02X" % b for b in value), 3 * first),
        (b"".join(b"\\u%04x" % b for b in value), 6 * first),
        *((core, min(need, len(core))) for core, need in cores),
        *((core.translate(url), min(need, len(core))) for core, need in cores),
    ]


def forms(value: bytes) -> list[bytes]:
    """The spellings of value the masker looks for: itself, percent, \\u, base64 cores."""
    return [text for text, _ in spellings(value)]


class Secrets:
    """Every spelling of a set of real values, prepared once per policy."""

    def __init__(self, values: Iterable[bytes]) -> None:
        found: dict[bytes, tuple[int, int]] = {}
        for value in dict.fromkeys(v for v in values if v):
            for text, need in spellings(value):
                low = text.lower()
                # Two spellings that agree (base64 without + or /) are one probe.
                if low not in found:
                    found[low] = (need, len(low))
        self.probes = tuple((text, need, size) for text, (need, size) in found.items())
        """(lower-cased spelling, bytes that make a match, bytes masked from its start)."""
        self.hold = max((size for _, _, size in self.probes), default=1) - 1
        self.heads = tuple(sorted({t[:need] for t, need, _ in self.probes}, key=len, reverse=True))
        self._screen = re.compile(b"|".join(map(re.escape, self.heads))) if self.heads else None

    def occur(self, low: bytes) -> bool:
        """Whether a match starts anywhere in low (lower-cased data): the common answer is no.

        Measured: a regex of the heads is fastest on a response head (~4 us), a find per head on
        a 64 KiB chunk (~0.35 ms, where the regex takes 1.6 ms).
        """
        if self._screen is None:
            return False
        if len(low) <= _SCREEN_BY_REGEX:
            return self._screen.search(low) is not None
        return any(head in low for head in self.heads)


def _spans(low: bytes, secrets: Secrets) -> Iterator[tuple[int, int]]:
    """(start, end) of each match in low, to its spelling's length or the end of the line."""
    for text, need, size in secrets.probes:
        head = text[:need]
        at = low.find(head)
        while at >= 0:
            line_end = _LINE_END.search(low, at, at + size)
            yield at, line_end.start() if line_end else at + size
            at = low.find(head, at + 1)


def mask_spans(data: bytes, secrets: Secrets, start: int = 0, stop: int | None = None) -> bytes:
    """data[start:stop] with every match found in all of data masked."""
    stop = len(data) if stop is None else stop
    low = data.lower()
    if not secrets.occur(low):
        return data[start:stop]
    out = bytearray(data[start:stop])
    for at, end in _spans(low, secrets):
        a, b = max(at, start), min(end, stop)
        if a < b:
            out[a - start : b - start] = b"*" * (b - a)
    return bytes(out)


class Masker:
    """Masks secrets in a stream, always holding back the last `hold` bytes, whatever they are."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.hold = secrets.hold if secrets.probes else 0
        self._tail = b""
        """The last bytes released, as they came: a match may start there and go on."""
        self._held = b""

    @property
    def holding(self) -> bool:
        """Whether bytes are waiting for more input, the end, or release()."""
        return bool(self._held)

    def _cut(self, window: bytes, cut: int) -> bytes:
        out = mask_spans(window, self.secrets, len(self._tail), cut)
        self._tail = window[max(0, cut - self.hold) : cut]
        self._held = window[cut:]
        return out

    def feed(self, data: bytes) -> bytes:
        """The masked bytes that leave now: all but the last `hold` of what has come in."""
        if not self.hold:
            return data
        window = self._tail + self._held + data
        cut = len(window) - self.hold
        if cut <= len(self._tail):
            self._held = window[len(self._tail) :]  # nothing leaves yet: nothing to look at
            return b""
        return self._cut(window, cut)

    def release(self) -> bytes:
        """Everything held, masked as far as can be told now (the caller's timer, or the end)."""
        if not self._held:
            return b""
        window = self._tail + self._held
        return self._cut(window, len(window))

    def finds(self, data: bytes) -> bool:
        """Whether data holds anything this masker would mask."""
        return self.secrets.occur(data.lower())

    def text(self, data: bytes) -> bytes:
        """data masked as a whole (a header, a message), leaving this stream as it was."""
        return mask_spans(data, self.secrets)


class Guard:
    """Raises ForbiddenError on a needle; lets all but the last `hold` bytes through, always."""

    def __init__(self, needles: Iterable[bytes]) -> None:
        self._needles = tuple(sorted({n for n in needles if n}, key=len, reverse=True))
        self.hold = max((len(n) for n in self._needles), default=1) - 1
        self._held = b""

    def _check(self, window: bytes) -> None:
        for needle in self._needles:
            if needle in window:
                raise ForbiddenError(needle)

    def feed(self, data: bytes) -> bytes:
        """What may leave now; ForbiddenError if a needle is complete in what came in."""
        if not self._needles:
            return data
        window = self._held + data
        self._check(window)
        cut = max(0, len(window) - self.hold)
        self._held = window[cut:]
        return window[:cut]

    def finish(self) -> bytes:
        """The rest, at the end of the stream."""
        held, self._held = self._held, b""
        if held:
            self._check(held)
        return held
