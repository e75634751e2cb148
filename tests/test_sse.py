"""SSE framing: what the runner and the gateway write, a reader gets back, however the bytes are
split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddock.sse import KEEPALIVE, SseEvent, SseParser, format_event

pytestmark = pytest.mark.unit

_line = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=40
)


@given(
    events=st.lists(st.tuples(_line, st.sampled_from(["token", "end"]), st.integers(0, 10**9))),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_events_survive_any_chunking(events: list[tuple[str, str, int]], cuts: list[int]) -> None:
    wire = b"".join([KEEPALIVE, *(format_event(data, kind, f"{i}-0") for data, kind, i in events)])
    parser = SseParser()
    got: list[SseEvent] = []
    start = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        got += parser.feed(wire[start:cut])
        start = max(start, cut)
    got += parser.feed(wire[start:])
    assert got == [SseEvent(data, kind, f"{i}-0") for data, kind, i in events]


def test_crlf_comments_and_multiline_data() -> None:
    parser = SseParser()
    got = parser.feed(b": hi\r\nid: 7\r\ndata: a\r\ndata: b\r\n\r\ndata: c\n\n")
    assert got == [SseEvent("a\nb", "message", "7"), SseEvent("c")]
