"""The gateway's metrics: names and label sets that stay fixed, what the store and the event
stream count (against a real redis-server), and HTTP requests labelled by route template."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from paddock.protocol import RunnerEvent
from paddock.sse import KEEPALIVE
from paddock_gateway.app import RequestTimer
from paddock_gateway.errors import SessionNotFoundError
from paddock_gateway.events import EventReader
from paddock_gateway.metrics import (
    AUTH_OUTCOMES,
    EVENT_TYPES,
    TURN_OUTCOMES,
    WAIT_REASONS,
    GatewayMetrics,
    Metrics,
)
from paddock_gateway.store import SESSIONS, SessionKeys, Store
from paddock_testing.metrics import Samples, samples
from paddock_testing.proc import free_port


def scrape(metrics: GatewayMetrics, sessions: int | None = None) -> Samples:
    return samples(metrics.text(sessions).decode())


def value(found: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the scrape does not have it."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


LABELS = {
    "paddock_gateway_sessions_created_total": set(),
    "paddock_gateway_sessions_deleted_total": set(),
    "paddock_gateway_sessions": set(),
    "paddock_gateway_turns_started_total": set(),
    "paddock_gateway_turns_finished_total": {"outcome"},
    "paddock_gateway_turns_running": set(),
    "paddock_gateway_events_appended_total": {"type"},
    "paddock_gateway_agent_waits_total": {"reason"},
    "paddock_gateway_runner_reconnects_total": set(),
    "paddock_gateway_auth_decisions_total": {"outcome"},
    "paddock_gateway_redis_operation_duration_seconds_count": {"operation", "outcome"},
    "paddock_gateway_http_request_duration_seconds_count": {"method", "route", "code"},
    "paddock_gateway_stream_clients": {"transport"},
    "paddock_gateway_stream_resume_events_count": set(),
}


# --- tier 1: the metrics alone ---------------------------------------------------------------


@pytest.mark.unit
def test_a_scrape_has_each_metric_with_its_fixed_label_names() -> None:
    metrics = GatewayMetrics()
    metrics.redis_call("get", 0.001, ok=True)
    metrics.request("GET", "/healthz", 200, 0.001)
    metrics.resumed(3)
    with metrics.driving():
        found = scrape(metrics, sessions=4)
    names = {name for name, _ in found}
    assert set(LABELS) <= names
    for (name, labels), _ in found.items():
        if name in LABELS:
            assert {k for k, _ in labels} == LABELS[name], name
    assert value(found, "paddock_gateway_sessions") == 4
    assert value(found, "paddock_gateway_turns_running") == 1
    assert value(scrape(metrics), "paddock_gateway_turns_running") == 0
    # The fixed sets are there from the start, at zero, so a rate() has a series to start from.
    for kind in (*EVENT_TYPES, "other"):
        assert ("paddock_gateway_events_appended_total", (("type", kind),)) in found
    for outcome in (*TURN_OUTCOMES, "other"):
        assert ("paddock_gateway_turns_finished_total", (("outcome", outcome),)) in found
    for outcome in AUTH_OUTCOMES:
        assert ("paddock_gateway_auth_decisions_total", (("outcome", outcome),)) in found
    for reason in WAIT_REASONS:
        assert ("paddock_gateway_agent_waits_total", (("reason", reason),)) in found


@pytest.mark.unit
def test_the_sessions_gauge_is_left_out_when_redis_could_not_count_them() -> None:
    found = scrape(GatewayMetrics(), sessions=None)
    assert "paddock_gateway_sessions" not in {name for name, _ in found}


@pytest.mark.unit
def test_values_outside_the_fixed_sets_are_counted_as_other() -> None:
    metrics = GatewayMetrics()
    metrics.events_appended(["output", "output", "a-type-a-runner-made-up"])
    metrics.turn_finished("exploded")
    metrics.request("BREW", "/healthz", 418, 0.001)
    found = scrape(metrics)
    assert value(found, "paddock_gateway_events_appended_total", type="output") == 2
    assert value(found, "paddock_gateway_events_appended_total", type="other") == 1
    assert value(found, "paddock_gateway_turns_finished_total", outcome="other") == 1
    key = {"method": "other", "route": "/healthz", "code": "4xx"}
    assert value(found, "paddock_gateway_http_request_duration_seconds_count", **key) == 1


@pytest.mark.unit
def test_each_gateway_metrics_has_a_registry_of_its_own() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()  # no clash: not the global registry
    first.session_created()
    assert value(scrape(first), "paddock_gateway_sessions_created_total") == 1
    assert value(scrape(second), "paddock_gateway_sessions_created_total") == 0
    assert not [m for m in REGISTRY.collect() if m.name.startswith("paddock_gateway")]


async def three_chunks() -> AsyncIterator[bytes]:
    for chunk in (b"a", b"b", b"c"):
        yield chunk


@pytest.mark.unit
@pytest.mark.asyncio
async def test_a_stream_counts_as_a_client_until_it_ends_or_is_closed() -> None:
    metrics = GatewayMetrics()

    def clients() -> float:
        return value(scrape(metrics), "paddock_gateway_stream_clients", transport="sse")

    stream = metrics.stream(three_chunks())
    assert clients() == 0  # not yet served
    assert await anext(stream) == b"a"
    assert clients() == 1
    await stream.aclose()  # type: ignore[attr-defined]  # the client went away
    assert clients() == 0
    assert [chunk async for chunk in metrics.stream(three_chunks())] == [b"a", b"b", b"c"]
    assert clients() == 0


@pytest.mark.unit
@pytest.mark.asyncio
async def test_with_metrics_off_nothing_is_recorded_and_streams_pass_through() -> None:
    off = Metrics()
    chunks = three_chunks()
    assert off.stream(chunks) is chunks
    with off.driving():
        off.events_appended(["output"])
    await chunks.aclose()  # type: ignore[attr-defined]


def timed_app(metrics: GatewayMetrics) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestTimer, metrics=metrics)
    return app


@pytest.mark.unit
@pytest.mark.asyncio
async def test_requests_are_labelled_by_route_template_never_by_the_path_sent() -> None:
    metrics = GatewayMetrics()
    transport = httpx.ASGITransport(timed_app(metrics), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        assert (await http.get("/v1/things/secret-thing-42")).status_code == 200
        assert (await http.get("/v1/things/another")).status_code == 200
        assert (await http.get("/no/such/path/secret-too")).status_code == 404
        assert (await http.post("/v1/things/x")).status_code == 405
        assert (await http.get("/broken")).status_code == 500
    found = scrape(metrics)
    count = "paddock_gateway_http_request_duration_seconds_count"
    assert value(found, count, method="GET", route="/v1/things/{thing_id}", code="2xx") == 2
    assert value(found, count, method="GET", route="other", code="4xx") == 1
    assert value(found, count, method="POST", route="/v1/things/{thing_id}", code="4xx") == 1
    assert value(found, count, method="GET", route="/broken", code="5xx") == 1
    text = metrics.text(None).decode()
    assert "secret" not in text
    assert "another" not in text


# --- tier 2: what the store and the event stream count, on a real redis-server ----------------


def store_on(redis: Redis, metrics: Metrics, idle_seconds: int = 3600) -> Store:
    return Store(redis, max_events=10_000, idle_seconds=idle_seconds, grace=60, metrics=metrics)


def output(turn_id: str, seq: int, kind: str = "output", **data: str) -> tuple[RunnerEvent, str]:
    """A runner event as the driver hands it to the store: parsed, and as received."""
    event = RunnerEvent.model_validate(
        {"incarnation": "inc-1", "seq": seq, "turn_id": turn_id, "type": kind, "data": data}
    )
    return event, event.model_dump_json()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_turn_in_the_store_counts_each_event_once_and_its_outcome(redis: Redis) -> None:
    metrics = GatewayMetrics()
    store = store_on(redis, metrics)
    session = await store.create("ns", "agent", None)
    await store.post("ns", "agent", session.id, message_id="m1", content="hi", model=None)
    await store.post("ns", "agent", session.id, message_id="m1", content="hi", model=None)
    token = await store.acquire(session.id, 30)
    assert token is not None
    turn = await store.next_turn(session.id, token)
    assert turn is not None
    assert await store.begin_incarnation(session.id, token, turn.turn_id, "inc-1")
    batch = [output(turn.turn_id, seq, text=f"line {seq}") for seq in (1, 2)]
    await store.ingest(session.id, token, turn, "inc-1", batch)
    # The reader came back from an older point: 1 and 2 again, then the rest.
    batch += [output(turn.turn_id, 3), output(turn.turn_id, 4, "turn_end", reason="done")]
    assert await store.ingest(session.id, token, turn, "inc-1", batch) == ("ended", 4)
    await store.append(session.id, "agent_ready", {}, token=token[::-1])  # not the lease: unwritten
    found = scrape(metrics)
    appended = "paddock_gateway_events_appended_total"
    counts = {kind: value(found, appended, type=kind) for kind in (*EVENT_TYPES, "other")}
    assert {k: v for k, v in counts.items() if v} == {
        "session_created": 1, "user_message": 1, "turn_start": 1, "output": 3, "turn_end": 1,
    }  # fmt: skip
    assert value(found, "paddock_gateway_sessions_created_total") == 1
    assert value(found, "paddock_gateway_turns_started_total") == 1
    assert value(found, "paddock_gateway_turns_finished_total", outcome="done") == 1
    assert await redis.xlen(SessionKeys(session.id).events) == sum(counts.values())


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_failed_turn_and_a_turn_deleted_with_its_session_are_told_apart(
    redis: Redis,
) -> None:
    metrics = GatewayMetrics()
    store = store_on(redis, metrics)
    for outcome in ("failed", "deleted"):
        session = await store.create("ns", "agent", None)
        await store.post("ns", "agent", session.id, message_id="m1", content="hi", model=None)
        token = await store.acquire(session.id, 30)
        assert token is not None
        turn = await store.next_turn(session.id, token)
        assert turn is not None
        if outcome == "failed":
            await store.fail_turn(session.id, token, turn.turn_id, "the agent was deleted")
        else:
            assert await store.delete("ns", "agent", session.id) == turn.turn_id
    found = scrape(metrics)
    finished = "paddock_gateway_turns_finished_total"
    assert value(found, finished, outcome="failed") == 1
    assert value(found, finished, outcome="deleted") == 1
    assert value(found, "paddock_gateway_sessions_deleted_total") == 1
    assert value(found, "paddock_gateway_events_appended_total", type="end") == 1
    assert value(found, "paddock_gateway_events_appended_total", type="error") == 1


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_store_counts_sessions_neither_deleted_nor_expired(redis: Redis) -> None:
    store = store_on(redis, Metrics())
    kept, deleted, expired, touched = [await store.create("ns", "a", None) for _ in range(4)]
    assert await store.count() == 4
    await store.delete("ns", "a", deleted.id)
    assert await store.count() == 3
    # Redis expired one; the other's deadline passed, but it was used since (its TTL renewed).
    await redis.delete(SessionKeys(expired.id).key("meta"))
    await redis.zadd(SESSIONS, {expired.id: 1, touched.id: 1})
    assert await store.count() == 2
    assert set(await redis.zrange(SESSIONS, 0, -1)) == {kept.id, touched.id}
    score = await redis.zscore(SESSIONS, touched.id)
    assert score is not None
    assert score > time.time() + 3000  # put off by its TTL, about an hour
    assert await store.count() == 2


@pytest.mark.integration
@pytest.mark.asyncio
async def test_store_calls_are_timed_by_operation_and_a_redis_that_does_not_answer_is_an_error(
    redis: Redis,
) -> None:
    metrics = GatewayMetrics()
    store = store_on(redis, metrics)
    session = await store.create("ns", "a", None)
    await store.get("ns", "a", session.id)
    with pytest.raises(SessionNotFoundError):
        await store.get("ns", "a", "f" * 32)  # Redis answered: no such session
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    try:
        with pytest.raises(RedisConnectionError):
            await store_on(nowhere, metrics).exists(session.id)
    finally:
        await nowhere.aclose()
    found = scrape(metrics)
    count = "paddock_gateway_redis_operation_duration_seconds_count"
    assert value(found, count, operation="create", outcome="ok") == 1
    assert value(found, count, operation="get", outcome="ok") == 2
    assert value(found, count, operation="exists", outcome="error") == 1


async def read_stream(chunks: AsyncIterator[bytes], until: bytes) -> list[str]:
    """The ids of the events read until one whose type is `until`."""
    ids, buffer = [], b""
    async for chunk in chunks:
        buffer += chunk
        if b"event: " + until in buffer:
            break
    for line in buffer.split(b"\n"):
        if line.startswith(b"id: "):
            ids.append(line[4:].decode())
    await chunks.aclose()  # type: ignore[attr-defined]
    return ids


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_resume_counts_the_events_stored_after_its_cursor(redis: Redis) -> None:
    metrics = GatewayMetrics()
    store = store_on(redis, metrics)
    session = await store.create("ns", "a", None)
    for i in range(9):
        await store.append(session.id, "output", {"text": f"line {i}"})
    await store.append(session.id, "end", {})
    reader = EventReader(store, session.id, keepalive=0.05, metrics=metrics)
    ids = await read_stream(await reader.start(None), b"end")  # not a resume: not counted
    assert len(ids) == 11
    for cursor in (ids[3], ids[-2]):
        assert await read_stream(await reader.start(cursor), b"end") == ids[ids.index(cursor) + 1 :]
    # Back at the newest event: nothing to replay, counted as soon as it is served.
    caught_up = await reader.start(ids[-1])
    assert await anext(caught_up) == KEEPALIVE
    await caught_up.aclose()  # type: ignore[attr-defined]
    # An event appended after the client came back is live, not replayed, even when it is
    # read together with the replayed ones.
    live = await store.create("ns", "a", None)
    cursor = await store.append(live.id, "output", {"text": "seen"})
    await store.append(live.id, "output", {"text": "missed"})
    resumed = await EventReader(store, live.id, 0.05, metrics).start(cursor)
    await store.append(live.id, "end", {})
    assert len(await read_stream(resumed, b"end")) == 2
    found = scrape(metrics)
    assert value(found, "paddock_gateway_stream_resume_events_count") == 4
    assert value(found, "paddock_gateway_stream_resume_events_sum") == 7 + 1 + 0 + 1
