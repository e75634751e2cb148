"""Sessions in Redis: metadata, the event stream, the inbox, history and the driving lease."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from paddock.protocol import Message, RunnerEvent
from paddock_gateway import scripts
from paddock_gateway.errors import ConflictError, GatewayError, SessionNotFoundError
from paddock_gateway.metrics import Metrics

PREFIX = "paddock"
ACTIVE = f"{PREFIX}:active"
SESSIONS = f"{PREFIX}:sessions"
"""Sorted set: every session not deleted -> when it expires if untouched since (unix seconds);
only for counting them (Store.count), which keeps the scores up to date."""
_COUNT_BATCH = 1000

State = Literal["idle", "running", "agent_restarting", "agent_waking", "deleted"]


@dataclass(frozen=True)
class SessionKeys:
    """The Redis keys of one session; the {id} hash tag keeps them in one cluster slot."""

    id: str

    def key(self, part: str) -> str:
        """The key of one part of the session."""
        return f"{PREFIX}:{{{self.id}}}:{part}"

    @property
    def events(self) -> str:
        """The session's event stream."""
        return self.key("events")

    @property
    def all(self) -> list[str]:
        """Every key, in the order the Lua scripts expect (see scripts.py)."""
        parts = ("meta", "events", "inbox", "msgids", "history", "pending", "lease")
        return [*(self.key(p) for p in parts), ACTIVE]


def agent_index(namespace: str, agent: str) -> str:
    """The set of an Agent's session ids."""
    return f"{PREFIX}:agent:{namespace}/{agent}"


@dataclass(frozen=True)
class SessionInfo:
    """A session's metadata."""

    id: str
    namespace: str
    agent: str
    created: datetime
    state: State
    turns: int
    model: str | None


@dataclass(frozen=True)
class Turn:
    """A turn in flight: the user's message, and how far the runner's events got."""

    turn_id: str
    message: Message
    model: str | None
    incarnation: str
    seq: int


@dataclass(frozen=True)
class Posted:
    """What became of a posted message."""

    turn_id: str
    duplicate: bool
    event_id: str | None


def turn_id_of(session_id: str, message_id: str) -> str:
    """The turn a message starts: unique across sessions (a runner serves many), and the same
    for a repeat of the message, so a re-sent turn is the same turn to the runner too."""
    return hashlib.sha256(f"{session_id}\0{message_id}".encode()).hexdigest()[:32]


def event_json(kind: str, data: dict[str, Any]) -> str:
    """A gateway event as clients receive it."""
    return json.dumps({"type": kind, "data": data}, separators=(",", ":"))


class LeaseLostError(Exception):
    """Another replica now drives this session's turns (or the session is gone)."""


class SessionGoneError(LeaseLostError):
    """The session was deleted while this replica drove it: its turn should stop on the runner."""


P = ParamSpec("P")
R = TypeVar("R")


def _measured(
    method: Callable[Concatenate[Store, P], Awaitable[R]],
) -> Callable[Concatenate[Store, P], Awaitable[R]]:
    """Time each call of a Store method, named by the method (store.metrics.redis_call); calls
    that other methods make are counted too."""
    operation = method.__name__

    @functools.wraps(method)
    async def measured(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        start = time.perf_counter()
        try:
            result = await method(store, *args, **kwargs)
        except RedisError:
            store.metrics.redis_call(operation, time.perf_counter() - start, ok=False)
            raise
        except (GatewayError, LeaseLostError):  # Redis answered; the answer was a refusal
            store.metrics.redis_call(operation, time.perf_counter() - start, ok=True)
            raise
        # Not counted: a call abandoned (cancelled), whose time says nothing of Redis.
        store.metrics.redis_call(operation, time.perf_counter() - start, ok=True)
        return result

    return measured


class Store:
    """Every read and write of session state; atomic where it matters (scripts.py)."""

    def __init__(
        self, redis: Redis, max_events: int, idle_seconds: int, grace: int,
        metrics: Metrics | None = None,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.max_events = max_events
        self.idle_seconds = idle_seconds
        self.grace = grace
        self.metrics = metrics or Metrics()
        self._scripts = {
            name: redis.register_script(getattr(scripts, name))
            for name in (
                "POST_MESSAGE",
                "NEXT_TURN",
                "BEGIN_INCARNATION",
                "INGEST",
                "FAIL_TURN",
                "APPEND",
                "DELETE",
                "RENEW",
                "RELEASE",
            )
        }

    async def _run(self, name: str, session_id: str, *args: str | int) -> Any:
        return await self._scripts[name](keys=SessionKeys(session_id).all, args=list(args))

    # --- sessions ---------------------------------------------------------------------------

    @_measured
    async def create(self, namespace: str, agent: str, model: str | None) -> SessionInfo:
        """A new, idle session on the Agent."""
        session_id = secrets.token_hex(16)
        keys = SessionKeys(session_id)
        created = datetime.now(UTC)
        meta: dict[Any, str | int] = {
            "namespace": namespace,
            "agent": agent,
            "created": created.isoformat(),
            "state": "idle",
            "turns": 0,
            "model": model or "",
            "turn": "",
        }
        event = event_json("session_created", {"session_id": session_id})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.key("meta"), mapping=meta)
            pipe.expire(keys.key("meta"), self.idle_seconds)
            pipe.xadd(keys.events, {"t": "session_created", "e": event})
            pipe.expire(keys.events, self.idle_seconds)
            pipe.sadd(agent_index(namespace, agent), session_id)
            pipe.zadd(SESSIONS, {session_id: time.time() + self.idle_seconds})
            await pipe.execute()
        self.metrics.session_created()
        self.metrics.events_appended(["session_created"])
        return SessionInfo(session_id, namespace, agent, created, "idle", 0, model)

    @_measured
    async def get(self, namespace: str, agent: str, session_id: str) -> SessionInfo:
        """The session, if it exists on this Agent; SessionNotFoundError otherwise."""
        meta = await self.redis.hgetall(SessionKeys(session_id).key("meta"))
        info = _info(session_id, meta)
        if info is None or info.namespace != namespace or info.agent != agent:
            raise SessionNotFoundError(
                f"session {session_id} not found on agent {namespace}/{agent}"
            )
        return info

    @_measured
    async def sessions(self, namespace: str, agent: str) -> list[SessionInfo]:
        """The Agent's sessions, oldest first."""
        index = agent_index(namespace, agent)
        ids: list[str] = sorted(await self.redis.smembers(index))  # type: ignore[arg-type]
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(SessionKeys(session_id).key("meta"))
            metas = await pipe.execute()
        found, expired = [], []
        for session_id, meta in zip(ids, metas, strict=True):
            info = _info(session_id, meta)
            if info is None:
                expired.append(session_id)
            else:
                found.append(info)
        if expired:
            await self.redis.srem(index, *expired)
        return sorted(found, key=lambda s: s.created)

    @_measured
    async def delete(self, namespace: str, agent: str, session_id: str) -> str | None:
        """End the session: streams see `end`, its keys expire after the grace period.

        Returns the turn that was in flight (for the runner to stop), None when there was none.
        """
        await self.get(namespace, agent, session_id)
        end = event_json("end", {"reason": "deleted"})
        turn = await self._run("DELETE", session_id, self.grace, self.max_events, session_id, end)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(agent_index(namespace, agent), session_id)
            pipe.zrem(SESSIONS, session_id)
            await pipe.execute()
        if turn is None:  # deleted meanwhile by another request
            return None
        self.metrics.session_deleted()
        self.metrics.events_appended(["end"])
        if turn:
            self.metrics.turn_finished("deleted")
        return str(turn) or None

    @_measured
    async def locate(self, session_id: str) -> SessionInfo | None:
        """The session by id alone, for the replica that drives it."""
        return _info(session_id, await self.redis.hgetall(SessionKeys(session_id).key("meta")))

    @_measured
    async def exists(self, session_id: str) -> bool:
        """Whether the session's metadata is still there (deleted ones linger for the grace)."""
        return bool(await self.redis.exists(SessionKeys(session_id).key("meta")))

    # --- messages and history ---------------------------------------------------------------

    @_measured
    async def post(
        self, namespace: str, agent: str, session_id: str, *, message_id: str, content: str,
        model: str | None,
    ) -> Posted:  # fmt: skip
        """Queue a user message for a turn, once per message id."""
        await self.get(namespace, agent, session_id)
        message = Message(role="user", content=content).model_dump_json(exclude_none=True)
        digest = hashlib.sha256(f"{model}\0{content}".encode()).hexdigest()
        turn_id = turn_id_of(session_id, message_id)
        item = json.dumps({"turn_id": turn_id, "message": message, "model": model})
        event = event_json("user_message", {"message_id": message_id, "content": content})
        answer = await self._run(
            "POST_MESSAGE",
            session_id,
            self.idle_seconds,
            self.max_events,
            session_id,
            message_id,
            digest,
            item,
            event,
        )
        verdict = answer[0]
        if verdict == "gone":
            raise SessionNotFoundError(f"session {session_id} not found")
        if verdict == "conflict":
            raise ConflictError(f"message id {message_id} was already used for a different message")
        if verdict == "accepted":
            self.metrics.events_appended(["user_message"])
        return Posted(turn_id, verdict == "duplicate", answer[1] if len(answer) > 1 else None)

    @_measured
    async def history(self, session_id: str) -> list[Message]:
        """The conversation before the turn in flight."""
        raw = await self.redis.lrange(SessionKeys(session_id).key("history"), 0, -1)
        return [Message.model_validate_json(m) for m in raw]

    # --- driving turns (lease holders only) -----------------------------------------------

    @_measured
    async def acquire(self, session_id: str, ttl: float) -> str | None:
        """A lease token if this caller now drives the session's turns, else None."""
        token = secrets.token_hex(8)
        lease = SessionKeys(session_id).key("lease")
        if await self.redis.set(lease, token, nx=True, px=int(ttl * 1000)):
            return token
        return None

    @_measured
    async def renew(self, session_id: str, token: str, ttl: float) -> bool:
        """Extend the lease; False when it was lost."""
        return bool(await self._run("RENEW", session_id, token, int(ttl * 1000)))

    @_measured
    async def release(self, session_id: str, token: str) -> None:
        """Give the lease up, so another replica may take the session at once."""
        await self._run("RELEASE", session_id, token)

    @_measured
    async def active(self) -> list[str]:
        """Sessions with a turn in flight or waiting."""
        return sorted(await self.redis.smembers(ACTIVE))  # type: ignore[arg-type]

    @_measured
    async def next_turn(self, session_id: str, token: str) -> Turn | None:
        """The turn in flight, else the next queued one; None (lease given up) when idle."""
        answer = await self._run(
            "NEXT_TURN", session_id, self.idle_seconds, self.max_events, session_id, token
        )
        verdict = answer[0]
        if verdict == "lease_lost":
            raise LeaseLostError(session_id)
        if verdict in ("idle", "gone"):
            return None
        if verdict == "new":
            self.metrics.turn_started()
            self.metrics.events_appended(["turn_start"])
        item = json.loads(answer[1])
        return Turn(
            turn_id=item["turn_id"],
            message=Message.model_validate_json(item["message"]),
            model=item.get("model"),
            incarnation=answer[2] or "",
            seq=int(answer[3] or 0),
        )

    @_measured
    async def begin_incarnation(
        self, session_id: str, token: str, turn_id: str, incarnation: str
    ) -> bool:
        """Record the runner incarnation that runs the turn; True when it is a new one."""
        verdict = await self._run("BEGIN_INCARNATION", session_id, token, turn_id, incarnation)
        if verdict == "gone":
            raise SessionGoneError(session_id)
        if verdict in ("lease_lost", "stale"):
            raise LeaseLostError(session_id)
        return bool(verdict == "new")

    @_measured
    async def ingest(
        self, session_id: str, token: str, turn: Turn, incarnation: str,
        events: Sequence[tuple[RunnerEvent, str]],
    ) -> tuple[str, int]:  # fmt: skip
        """Store runner events (parsed, and as received) not stored yet, in order.

        Returns 'ok' | 'ended' | 'gap' and the last seq now stored.
        """
        args: list[str | int] = [
            self.idle_seconds, self.max_events, token, turn.turn_id, incarnation,
        ]  # fmt: skip
        for event, raw in events:
            message = ""
            if event.type == "message":
                message = Message.model_validate(event.data).model_dump_json(exclude_none=True)
            args += [event.seq, event.type, raw, message]
        verdict, added, last = await self._run("INGEST", session_id, *args)
        if verdict == "gone":
            raise SessionGoneError(session_id)
        if verdict in ("lease_lost", "stale"):
            raise LeaseLostError(session_id)
        self._count_ingested(events, int(added), int(last), ended=verdict == "ended")
        return str(verdict), int(last)

    def _count_ingested(
        self, events: Sequence[tuple[RunnerEvent, str]], added: int, last: int, *, ended: bool
    ) -> None:
        """Count the events INGEST stored: seqs last-added+1 .. last (the others were repeats)."""
        by_seq = {event.seq: event for event, _ in events}
        stored = [by_seq[s] for s in range(last - added + 1, last + 1) if s in by_seq]
        self.metrics.events_appended(event.type for event in stored)
        if ended and stored:  # the turn_end, stored last
            self.metrics.turn_finished(str(stored[-1].data.get("reason")))

    @_measured
    async def append(
        self, session_id: str, kind: str, data: dict[str, Any], *, token: str = "",
        state: State | None = None,
    ) -> str | None:  # fmt: skip
        """Append a gateway event (and set the session's state); None if not written."""
        answer = await self._run(
            "APPEND", session_id, self.idle_seconds, self.max_events, token, kind,
            event_json(kind, data), state or "",
        )  # fmt: skip
        if not answer:
            return None
        self.metrics.events_appended([kind])
        return str(answer)

    @_measured
    async def fail_turn(self, session_id: str, token: str, turn_id: str, reason: str) -> None:
        """End the turn in flight with an error event and turn_end(reason=error)."""
        failed = await self._run(
            "FAIL_TURN", session_id, self.idle_seconds, self.max_events, token, turn_id,
            event_json("error", {"message": reason}),
            json.dumps({"type": "turn_end", "turn_id": turn_id, "data": {"reason": "error"}}),
        )  # fmt: skip
        if failed:
            self.metrics.events_appended(["error", "turn_end"])
            self.metrics.turn_finished("failed")

    # --- counting ---------------------------------------------------------------------------

    @_measured
    async def count(self) -> int:
        """Sessions not deleted and not expired (made by a gateway that keeps SESSIONS).

        One round trip, unless sessions passed the expiry their score says: each is looked at
        then (gone: forgotten; touched since: scored anew), at most _COUNT_BATCH per call.
        """
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(SESSIONS, "-inf", now, start=0, num=_COUNT_BATCH)
            pipe.zcard(SESSIONS)
            due, count = await pipe.execute()
        if not due:
            return int(count)
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in due:
                pipe.pttl(SessionKeys(session_id).key("meta"))
            ttls = await pipe.execute()
        gone = [s for s, ttl in zip(due, ttls, strict=True) if ttl == -2]
        later = {
            s: now + (ttl / 1000 if ttl >= 0 else self.idle_seconds)
            for s, ttl in zip(due, ttls, strict=True)
            if ttl != -2
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            if gone:
                pipe.zrem(SESSIONS, *gone)
            if later:
                pipe.zadd(SESSIONS, later, xx=True)
            pipe.zcard(SESSIONS)
            answers = await pipe.execute()
        return int(answers[-1])


def _info(session_id: str, meta: Mapping[Any, Any]) -> SessionInfo | None:
    if not meta or meta.get("state") in (None, "deleted"):
        return None
    return SessionInfo(
        id=session_id,
        namespace=meta["namespace"],
        agent=meta["agent"],
        created=datetime.fromisoformat(meta["created"]),
        state=meta["state"],
        turns=int(meta.get("turns", 0)),
        model=meta.get("model") or None,
    )
