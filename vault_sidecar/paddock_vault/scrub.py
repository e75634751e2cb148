"""Find and replace secrets in a byte stream cut at arbitrary places, without buffering it.

Only the tail that could be the start of a needle is held back until the next chunk, so a stream
of events (SSE) flows as it arrives unless its last bytes happen to begin a secret.
"""

from __future__ import annotations

from collections.abc import Mapping


class ForbiddenError(Exception):
    """A needle that must not pass was found; args[0] is the needle."""


class Needles:
    """What to look for and what to put instead (None: must not pass), prepared once."""

    def __init__(self, replacements: Mapping[bytes, bytes | None]) -> None:
        self.replacements = {n: r for n, r in replacements.items() if n}
        # Longest first, so that at one position the longer needle wins.
        self.needles = sorted(self.replacements, key=len, reverse=True)
        self.firsts = {n[0] for n in self.needles}
        self.longest = len(self.needles[0]) if self.needles else 0


class StreamRewriter:
    """Replaces each needle with its replacement; a needle mapped to None raises ForbiddenError."""

    def __init__(self, needles: Needles | Mapping[bytes, bytes | None]) -> None:
        prepared = needles if isinstance(needles, Needles) else Needles(needles)
        self._replacements = prepared.replacements
        self._needles = prepared.needles
        self._firsts = prepared.firsts
        self._longest = prepared.longest
        self._held = b""

    def _partial(self, tail: bytes) -> int:
        """Length of the longest suffix of tail that is a proper prefix of a needle."""
        for k in range(min(len(tail), self._longest - 1), 0, -1):
            if tail[-k] in self._firsts:
                suffix = tail[-k:]
                if any(len(n) > k and n.startswith(suffix) for n in self._needles):
                    return k
        return 0

    def _replace(self, data: bytes, *, final: bool) -> bytes:
        pieces: list[bytes] = []
        pos = 0
        while True:
            best, best_at = b"", -1
            for needle in self._needles:
                at = data.find(needle, pos)
                if at >= 0 and (best_at < 0 or at < best_at):
                    best, best_at = needle, at
            if best_at < 0:
                break
            replacement = self._replacements[best]
            if replacement is None:
                raise ForbiddenError(best)
            pieces += (data[pos:best_at], replacement)
            pos = best_at + len(best)
        keep = 0 if final else self._partial(data[pos:])
        pieces.append(data[pos : len(data) - keep])
        self._held = data[len(data) - keep :]
        return b"".join(pieces)

    def feed(self, chunk: bytes) -> bytes:
        """The rewritten bytes that can be released now."""
        if not self._needles:
            return chunk
        return self._replace(self._held + chunk, final=False)

    def flush(self) -> bytes:
        """Whatever was held back, at the end of the stream."""
        return self._replace(self._held, final=True) if self._held else b""


def replace_all(data: bytes, replacements: Needles | Mapping[bytes, bytes | None]) -> bytes:
    """data with every needle replaced (ForbiddenError for a None replacement)."""
    rewriter = StreamRewriter(replacements)
    return rewriter.feed(data) + rewriter.flush()
