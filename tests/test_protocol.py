"""The session protocol's wire format: SSE framing both ways."""

from __future__ import annotations

import pytest

from paddock.protocol import RunnerEvent, sse_message
from paddock.sse import KEEPALIVE, SseParser

pytestmark = pytest.mark.unit


def test_events_survive_sse_framing_with_keepalives_between_them() -> None:
    sent = [
        RunnerEvent(incarnation="i1", seq=1, turn_id="t", type="token", data={"text": "a\nb"}),
        RunnerEvent(incarnation="i1", seq=2, turn_id="t", type="turn_end", data={"reason": "done"}),
    ]
    stream = sse_message(sent[0]) + KEEPALIVE + sse_message(sent[1])

    received = [RunnerEvent.model_validate_json(m.data) for m in SseParser().feed(stream)]

    assert received == sent
    assert stream.startswith(b"id: 1\n")
