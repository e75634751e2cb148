"""Session state in a real redis-server: durable across restarts, atomic, fenced by the lease."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from paddock.protocol import RunnerEvent
from paddock_gateway.store import LeaseLostError, SessionGoneError, SessionKeys, Store, Turn
from paddock_testing.redis import RedisServer

pytestmark = pytest.mark.integration


def wire(event: RunnerEvent) -> tuple[RunnerEvent, str]:
    """An event as the driver hands it to the store: parsed, and as received."""
    return event, event.model_dump_json()


def runner_events(turn_id: str, incarnation: str, seqs: range) -> list[tuple[RunnerEvent, str]]:
    """`output` events with these seqs."""
    return [
        wire(RunnerEvent(incarnation=incarnation, seq=seq, turn_id=turn_id, type="output",
                         data={"text": f"line {seq}"}))
        for seq in seqs
    ]  # fmt: skip


def store_on(redis: Redis) -> Store:
    return Store(redis, max_events=10_000, idle_seconds=3600, grace=60)


async def started_turn(store: Store, message: str = "hi") -> tuple[str, str, Turn]:
    """A session with one turn taken by a lease holder: (session id, token, turn)."""
    session = await store.create("ns", "agent", None)
    await store.post("ns", "agent", session.id, message_id="m1", content=message, model=None)
    token = await store.acquire(session.id, 30)
    assert token is not None
    turn = await store.next_turn(session.id, token)
    assert turn is not None
    return session.id, token, turn


async def stream_types(redis: Redis, session_id: str) -> list[tuple[str, str]]:
    entries = await redis.xrange(SessionKeys(session_id).events)
    return [(entry_id, fields["t"]) for entry_id, fields in entries]


@pytest.mark.asyncio
async def test_a_replayed_runner_event_is_stored_once(redis: Redis) -> None:
    store = store_on(redis)
    session_id, token, turn = await started_turn(store)
    assert await store.begin_incarnation(session_id, token, turn.turn_id, "inc-1")
    assert await store.ingest(session_id, token, turn, "inc-1", runner_events(
        turn.turn_id, "inc-1", range(1, 4))) == ("ok", 3)  # fmt: skip
    # The connection broke and the reader came back from an older point: 1..5 again.
    again = runner_events(turn.turn_id, "inc-1", range(1, 6))
    assert await store.ingest(session_id, token, turn, "inc-1", again) == ("ok", 5)
    skipping = runner_events(turn.turn_id, "inc-1", range(7, 8))
    assert await store.ingest(session_id, token, turn, "inc-1", skipping) == ("gap", 5)
    types = [t for _, t in await stream_types(redis, session_id)]
    assert types == ["session_created", "user_message", "turn_start"] + ["output"] * 5


@pytest.mark.asyncio
async def test_turn_end_moves_the_turn_into_history(redis: Redis) -> None:
    store = store_on(redis)
    session_id, token, turn = await started_turn(store, "what is 2+2")
    await store.begin_incarnation(session_id, token, turn.turn_id, "inc-1")
    answer = RunnerEvent(
        incarnation="inc-1", seq=1, turn_id=turn.turn_id, type="message",
        data={"role": "assistant", "content": "4"},
    )  # fmt: skip
    end = RunnerEvent(
        incarnation="inc-1", seq=2, turn_id=turn.turn_id, type="turn_end", data={"reason": "done"}
    )
    batch = [wire(answer), wire(end)]
    assert (await store.ingest(session_id, token, turn, "inc-1", batch))[0] == "ended"
    history = await store.history(session_id)
    assert [(m.role, m.content) for m in history] == [("user", "what is 2+2"), ("assistant", "4")]
    assert await store.next_turn(session_id, token) is None  # idle: the lease is given up
    assert session_id not in await store.active()


@pytest.mark.asyncio
async def test_a_replica_that_lost_its_lease_cannot_write(redis: Redis) -> None:
    store = store_on(redis)
    session_id, token, turn = await started_turn(store)
    await store.begin_incarnation(session_id, token, turn.turn_id, "inc-1")
    await redis.delete(SessionKeys(session_id).key("lease"))  # as if it expired
    other = await store.acquire(session_id, 30)
    assert other is not None
    before = await stream_types(redis, session_id)
    with pytest.raises(LeaseLostError):
        await store.ingest(
            session_id, token, turn, "inc-1", runner_events(turn.turn_id, "inc-1", range(1, 3))
        )
    assert not await store.renew(session_id, token, 30)
    assert await stream_types(redis, session_id) == before
    # The new holder goes on from where the turn was.
    resumed = await store.next_turn(session_id, other)
    assert resumed is not None
    assert (resumed.turn_id, resumed.incarnation, resumed.seq) == (turn.turn_id, "inc-1", 0)


@pytest.mark.asyncio
async def test_events_of_a_replaced_incarnation_are_refused(redis: Redis) -> None:
    store = store_on(redis)
    session_id, token, turn = await started_turn(store)
    await store.begin_incarnation(session_id, token, turn.turn_id, "inc-1")
    await store.ingest(
        session_id, token, turn, "inc-1", runner_events(turn.turn_id, "inc-1", range(1, 3))
    )
    assert await store.begin_incarnation(session_id, token, turn.turn_id, "inc-2")
    with pytest.raises(LeaseLostError):
        await store.ingest(
            session_id, token, turn, "inc-1", runner_events(turn.turn_id, "inc-1", range(3, 4))
        )


@pytest.mark.asyncio
async def test_delete_names_the_turn_to_stop_and_fences_its_driver(redis: Redis) -> None:
    store = store_on(redis)
    idle = await store.create("ns", "agent", None)
    assert await store.delete("ns", "agent", idle.id) is None
    session_id, token, turn = await started_turn(store)
    assert await store.delete("ns", "agent", session_id) == turn.turn_id
    # A driver that started the turn on a runner just now learns the session is gone.
    with pytest.raises(SessionGoneError):
        await store.begin_incarnation(session_id, token, turn.turn_id, "inc-1")
    with pytest.raises(SessionGoneError):
        await store.ingest(
            session_id, token, turn, "inc-1", runner_events(turn.turn_id, "inc-1", range(1, 2))
        )


@pytest_asyncio.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.mark.asyncio
async def test_redis_restarted_with_its_aof_keeps_sessions_and_events(
    own_redis: RedisServer,
) -> None:
    client = Redis.from_url(own_redis.url, decode_responses=True)
    store = store_on(client)
    session_id, token, turn = await started_turn(store, "first")
    await store.post("ns", "agent", session_id, message_id="m2", content="second", model=None)
    await store.begin_incarnation(session_id, token, turn.turn_id, "inc-1")
    await store.ingest(
        session_id, token, turn, "inc-1", runner_events(turn.turn_id, "inc-1", range(1, 4))
    )
    session = await store.get("ns", "agent", session_id)
    events = await stream_types(client, session_id)
    await client.aclose()

    own_redis.stop(kill=True)  # no chance to flush anything more: the AOF is all there is
    own_redis.start()

    client = Redis.from_url(own_redis.url, decode_responses=True)
    store = store_on(client)
    try:
        assert await store.get("ns", "agent", session_id) == session
        assert await stream_types(client, session_id) == events
        assert [s.id for s in await store.sessions("ns", "agent")] == [session_id]
        repeat = await store.post(
            "ns", "agent", session_id, message_id="m2", content="second", model=None
        )
        assert repeat.duplicate
        # The turn in flight is still there, with its progress, for whoever drives it next.
        await client.delete(SessionKeys(session_id).key("lease"))
        token = await store.acquire(session_id, 30)
        assert token is not None
        resumed = await store.next_turn(session_id, token)
        assert resumed is not None
        assert (resumed.turn_id, resumed.incarnation, resumed.seq) == (turn.turn_id, "inc-1", 3)
    finally:
        await client.aclose()
