"""A client's event stream: history then live events from one blocking XREAD loop, as SSE."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from paddock_gateway.errors import BadRequestError
from paddock_gateway.sse import KEEPALIVE, format_event
from paddock_gateway.store import SessionKeys, Store

_CURSOR = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_BATCH = 1000
_BEGINNING = "0-0"


def parse_cursor(cursor: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair; BadRequestError when it is not one."""
    match = _CURSOR.match(cursor)
    if match is None:
        raise BadRequestError(
            f"cursor {cursor[:64]!r} is not an event id: expect the `id:` of an event, "
            "such as 1718000000000-0"
        )
    return int(match[1]), int(match[2] or 0)


async def _stream_ends(redis: Redis, key: str) -> tuple[tuple[int, int], str | None]:
    """The newest id the stream ever had (zeros if none), and its oldest entry's id, if any."""
    try:
        info = await redis.xinfo_stream(key)
    except Exception:  # no stream yet: nothing was ever written
        return (0, 0), None
    first = info.get("first-entry")
    return parse_cursor(info["last-generated-id"]), first[0] if first else None


class EventReader:
    """Serves one client: what follows its cursor, then whatever is appended, until `end`."""

    def __init__(self, store: Store, session_id: str, keepalive: float) -> None:
        self.redis = store.redis
        self.store = store
        self.session_id = session_id
        self.key = SessionKeys(session_id).events
        self.keepalive_ms = max(1, int(keepalive * 1000))

    async def start(self, after: str | None) -> AsyncIterator[bytes]:
        """Check the cursor (BadRequestError before any byte is sent), then stream."""
        cursor = after or _BEGINNING
        last, _ = await _stream_ends(self.redis, self.key)
        if after is not None and parse_cursor(after) > last:
            raise BadRequestError(f"cursor {after} is ahead of the session's newest event")
        return self._run(cursor)

    async def _reset_if_trimmed(self, cursor: str) -> tuple[str, bytes | None]:
        """If the event at `cursor` was trimmed away, a `reset` and the cursor to go on from.

        Trimming takes the oldest events first, so a cursor older than the oldest event left
        means the client may have missed events (its own cursor is no longer there to prove
        otherwise): it should drop what it shows and reload from what follows the reset.
        """
        if cursor == _BEGINNING or await self.redis.xrange(self.key, cursor, cursor, count=1):
            return cursor, None
        _, oldest = await _stream_ends(self.redis, self.key)
        if oldest is not None and parse_cursor(cursor) > parse_cursor(oldest):
            return cursor, None  # an id between two events: nothing before it is missing
        data = json.dumps(
            {"type": "reset", "data": {"reason": "trimmed", "oldest": oldest or _BEGINNING}}
        )
        # No id: the client's cursor moves with the next real event it gets.
        return _BEGINNING, format_event(data, "reset")

    async def _run(self, cursor: str) -> AsyncIterator[bytes]:
        cursor, reset = await self._reset_if_trimmed(cursor)
        if reset is not None:
            yield reset
        while True:
            answer: Any = await self.redis.xread(
                {self.key: cursor}, count=_BATCH, block=self.keepalive_ms
            )
            if not answer:
                if not await self.store.exists(self.session_id):
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
                cursor, reset = await self._reset_if_trimmed(cursor)
                if reset is not None:
                    yield reset
