"""The session protocol's wire format: SSE framing both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from paddock.protocol import RunnerEvent, read_sse_events, sse_message

pytestmark = pytest.mark.unit


async def _lines(text: str) -> AsyncIterator[str]:
    for line in text.split("\n"):
        yield line


@pytest.mark.asyncio
async def test_events_survive_sse_framing_with_keepalives_between_them() -> None:
    sent = [
        RunnerEvent(incarnation="i1", seq=1, turn_id="t", type="token", data={"text": "a\nb"}),
        RunnerEvent(incarnation="i1", seq=2, turn_id="t", type="turn_end", data={"reason": "done"}),
    ]
    stream = sse_message(sent[0]) + ": keep-alive\n\n" + sse_message(sent[1])

    received = [event async for event in read_sse_events(_lines(stream))]

    assert received == sent
    assert stream.startswith("id: 1\n")
