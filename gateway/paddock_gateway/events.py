"""A client's event stream: history then live events from one blocking XREAD loop, as SSE."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from paddock.sse import KEEPALIVE, format_event
from paddock_gateway.errors import BadRequestError
from paddock_gateway.metrics import Metrics
from paddock_gateway.store import SessionKeys, Store

_CURSOR = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_IDS = re.compile(rb"^id: (\S+)$", re.MULTILINE)
_BATCH = 1000
_BEGINNING = "0-0"
_EXISTS_EVERY = 4


def parse_cursor(cursor: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair; BadRequestError when it is not one."""
    match = _CURSOR.match(cursor)
    if match is None:
        raise BadRequestError(
            f"cursor {cursor[:64]!r} is not an event id: expect the `id:` of an event, "
            "such as 1718000000000-0"
        )
    return int(match[1]), int(match[2] or 0)


@dataclass(frozen=True)
class _Position:
    """Where a cursor stands in its stream."""

    last: tuple[int, int]
    """The newest id the stream ever had; zeros when it never had one."""
    oldest: str | None
    """The oldest event still kept."""
    present: bool
    """Whether the event the cursor names is still kept."""


def _last_id(chunk: bytes) -> tuple[int, int] | None:
    """The id of the last event in a chunk of SSE (a data line is one line of JSON, so a line
    that starts with `id: ` is an id); None when it has no event with an id."""
    at = chunk.rfind(b"\nid: ") + 1 or (0 if chunk.startswith(b"id: ") else -1)
    if at < 0:
        return None
    return parse_cursor(chunk[at + 4 : chunk.index(b"\n", at)].decode())


def _reset(oldest: str | None) -> bytes:
    data = {"type": "reset", "data": {"reason": "trimmed", "oldest": oldest or _BEGINNING}}
    # No id: the client's cursor moves with the next real event it gets.
    return format_event(json.dumps(data), "reset")


class EventReader:
    """Serves one client: what follows its cursor, then whatever is appended, until `end`."""

    def __init__(
        self, store: Store, session_id: str, keepalive: float, metrics: Metrics | None = None
    ) -> None:
        self.redis = store.redis
        self.store = store
        self.metrics = metrics or Metrics()
        self.session_id = session_id
        self.key = SessionKeys(session_id).events
        self.keepalive_ms = max(1, int(keepalive * 1000))

    async def start(self, after: str | None) -> AsyncIterator[bytes]:
        """Check the cursor (BadRequestError before any byte is sent), then stream."""
        if after is None:
            return self._run(_BEGINNING, None)
        wanted = parse_cursor(after)
        position = await self._locate(after)
        if wanted > position.last:
            raise BadRequestError(f"cursor {after} is ahead of the session's newest event")
        if self._trimmed(after, position):
            chunks = self._run(_BEGINNING, _reset(position.oldest))
            return self._counted(chunks, (0, 0), position.last)
        return self._counted(self._run(after, None), wanted, position.last)

    async def _counted(
        self, chunks: AsyncIterator[bytes], after: tuple[int, int], until: tuple[int, int]
    ) -> AsyncIterator[bytes]:
        """A resumed stream: the events after `after` up to `until` (the newest when the client
        came back) are counted as replayed, once all are sent or the client leaves first."""
        replayed, pending = 0, after < until
        if not pending:
            self.metrics.resumed(0)
        try:
            async for chunk in chunks:
                if pending and (last := _last_id(chunk)) is not None:
                    if last <= until:  # all of them replayed: counted without parsing each
                        replayed += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
                    else:
                        ids = (parse_cursor(i.decode()) for i in _IDS.findall(chunk))
                        replayed += sum(1 for i in ids if i <= until)
                    if last >= until:
                        pending = False
                        self.metrics.resumed(replayed)
                yield chunk
        finally:
            if pending:
                self.metrics.resumed(replayed)

    async def _locate(self, cursor: str) -> _Position:
        """One round trip: the stream's ends, and whether the cursor's event is still kept."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xinfo_stream(self.key)
            pipe.xrange(self.key, cursor, cursor, count=1)
            info, kept = await pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):  # no stream yet: nothing was ever written
            return _Position((0, 0), None, False)
        first = info.get("first-entry")
        return _Position(
            parse_cursor(info["last-generated-id"]), first[0] if first else None, bool(kept)
        )

    @staticmethod
    def _trimmed(cursor: str, position: _Position) -> bool:
        """Whether the client may have missed events because its cursor was trimmed away.

        Trimming takes the oldest events first, so a cursor gone from the stream and older than
        the oldest event left means events after it may be gone too: the client should drop
        what it shows and reload from what follows the `reset`.
        """
        if cursor == _BEGINNING or position.present:
            return False
        return position.oldest is None or parse_cursor(cursor) < parse_cursor(position.oldest)

    async def _run(self, cursor: str, reset: bytes | None) -> AsyncIterator[bytes]:
        if reset is not None:
            yield reset
        idle = 0
        while True:
            answer: Any = await self.redis.xread(
                {self.key: cursor}, count=_BATCH, block=self.keepalive_ms
            )
            if not answer:
                idle += 1
                # Now and then, not on every tick: 1,000 idle streams should not mean 1,000
                # extra round trips per keep-alive interval.
                if idle % _EXISTS_EVERY == 0 and not await self.store.exists(self.session_id):
                    yield format_event(json.dumps({"type": "end", "data": {}}), "end")
                    return
                yield KEEPALIVE
                continue
            entries = answer[0][1]
            chunk = []
            ended = False
            for entry_id, fields in entries:
                chunk.append(format_event(fields["e"], fields["t"], entry_id))
                if fields["t"] == "end":
                    ended = True
                    break
            cursor = entries[-1][0]
            yield b"".join(chunk)
            if ended:
                return
            if len(entries) == _BATCH:  # behind: trimming may have overtaken this reader
                position = await self._locate(cursor)
                if self._trimmed(cursor, position):
                    cursor = _BEGINNING
                    yield _reset(position.oldest)
