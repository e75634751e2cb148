"""Server-sent events, the framing of every event stream (the runner's and the gateway's): writing
them, and reading them back from a byte stream in chunks. The one SSE reader."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One event as a reader sees it; `id` is None when the event carried none."""

    data: str
    event: str = "message"
    id: str | None = None


def format_event(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One event on the wire; `data` must be a single line (JSON is)."""
    head = ""
    if id is not None:
        head += f"id: {id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


class SseParser:
    """Feed it bytes as they arrive; it returns the events completed so far, in order."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse what `chunk` completes; keep the rest for the next call."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        events = []
        for block in blocks:
            event = _parse_block(block.decode())
            if event is not None:
                events.append(event)
        return events


def _parse_block(block: str) -> SseEvent | None:
    data: list[str] = []
    event, id_ = "message", None
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            id_ = value
    if not data:
        return None
    return SseEvent("\n".join(data), event, id_)
