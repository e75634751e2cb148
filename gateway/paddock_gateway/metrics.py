"""The gateway's Prometheus metrics, served at /metrics on the gateway's own port.

Every label takes its values from a small fixed set (event types, outcomes, Store operations,
route templates, status classes): never a session, message or turn id, a token, a user, an
Agent's name or namespace, so the number of series is fixed and no label carries a client's data.

`Metrics` is what the rest of the gateway calls; it records nothing (PADDOCK_GATEWAY_METRICS=false).
`GatewayMetrics` records, in a registry of its own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

EVENT_TYPES = (
    "session_created", "user_message", "turn_start", "token", "message", "tool_call",
    "tool_result", "output", "error", "turn_end", "agent_restarting", "agent_waking",
    "agent_ready", "end",
)  # fmt: skip
"""Events a session's stream holds; any other type is counted as `other`."""
TURN_OUTCOMES = ("done", "cancelled", "error", "failed", "deleted")
"""done, cancelled, error: the runner's turn_end reason; failed: the gateway gave the turn up;
deleted: its session was deleted while it ran. Anything else is `other`."""
AUTH_OUTCOMES = ("allowed", "unauthenticated", "forbidden", "error")
WAIT_REASONS = ("restarting", "waking")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REPLAYED = (0, 1, 10, 100, 1_000, 10_000, 100_000)


def bounded(value: str | None, allowed: Iterable[str]) -> str:
    """value if it is one of the allowed, else `other`."""
    return value if value is not None and value in allowed else "other"


def code_class(status: int) -> str:
    """1xx .. 5xx."""
    return f"{status // 100}xx"


class Metrics:
    """What the gateway measures. This one records nothing: the gateway with metrics off."""

    def session_created(self) -> None:
        """A session was opened."""

    def session_deleted(self) -> None:
        """A session was deleted by a client (expiry is not counted)."""

    def turn_started(self) -> None:
        """A queued message became the session's turn in flight."""

    def turn_finished(self, outcome: str) -> None:
        """A turn ended (see TURN_OUTCOMES)."""

    def driving(self) -> AbstractContextManager[object]:
        """While this replica drives a turn."""
        return nullcontext()

    def events_appended(self, types: Iterable[str]) -> None:
        """Events appended to sessions' streams, one type per event."""

    def agent_wait(self, reason: str) -> None:
        """A turn began to wait for its Agent: restarting (its runner went away) or waking."""

    def runner_reconnect(self) -> None:
        """A driven turn lost its runner's event stream while the runner stayed the same one,
        and goes on reading from it."""

    def auth(self, outcome: str) -> None:
        """An authentication or authorization decision (see AUTH_OUTCOMES)."""

    def redis_call(self, operation: str, seconds: float, *, ok: bool) -> None:
        """One call of a Store method (a Store call the gateway abandoned is not counted)."""

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """An HTTP request answered: the time to its status line and headers."""

    def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """An SSE client's events, counted as connected while they flow."""
        return chunks

    def resumed(self, replayed: int) -> None:
        """A client resumed with a cursor and was sent `replayed` events that were already
        stored when it came back."""


class _Sessions(Collector):
    """Sessions in Redis, as the scrape that is being served counted them (none: not known)."""

    def __init__(self) -> None:
        self.count: int | None = None

    def collect(self) -> Iterator[Metric]:
        if self.count is not None:
            family = GaugeMetricFamily(
                "paddock_gateway_sessions",
                "Sessions in Redis, not deleted and not expired (the same on every replica)",
            )
            family.add_metric([], self.count)
            yield family


class GatewayMetrics(Metrics):
    """The gateway's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._sessions = _Sessions()
        self.registry.register(self._sessions)
        r = self.registry
        self.created = Counter(
            "paddock_gateway_sessions_created_total", "Sessions opened", registry=r
        )
        self.deleted = Counter(
            "paddock_gateway_sessions_deleted_total", "Sessions deleted by a client", registry=r
        )
        self.started = Counter(
            "paddock_gateway_turns_started_total",
            "Queued messages that became their session's turn in flight",
            registry=r,
        )
        self.finished = Counter(
            "paddock_gateway_turns_finished_total",
            "Turns ended, by outcome: done, cancelled, error (the runner's), failed (given up "
            "by the gateway), deleted (with their session)",
            ["outcome"],
            registry=r,
        )
        self.running = Gauge(
            "paddock_gateway_turns_running", "Turns this replica is driving now", registry=r
        )
        self.events = Counter(
            "paddock_gateway_events_appended_total",
            "Events appended to sessions' streams, by type",
            ["type"],
            registry=r,
        )
        self.waits = Counter(
            "paddock_gateway_agent_waits_total",
            "Turns that began to wait for their Agent: restarting (the runner went away) or "
            "waking (the Agent was suspended for being idle)",
            ["reason"],
            registry=r,
        )
        self.reconnects = Counter(
            "paddock_gateway_runner_reconnects_total",
            "Times a driven turn lost its runner's event stream, the runner still the same "
            "incarnation, and reconnected to it",
            registry=r,
        )
        self.decisions = Counter(
            "paddock_gateway_auth_decisions_total",
            "Requests on an Agent, by outcome: allowed, unauthenticated (401), forbidden (403), "
            "error (the API server did not answer)",
            ["outcome"],
            registry=r,
        )
        self.redis = Histogram(
            "paddock_gateway_redis_operation_duration_seconds",
            "Calls of the session store's operations on Redis, by operation and outcome",
            ["operation", "outcome"],
            registry=r,
            buckets=SECONDS,
        )
        self.requests = Histogram(
            "paddock_gateway_http_request_duration_seconds",
            "HTTP requests, to the response's headers, by method, route template and status class",
            ["method", "route", "code"],
            registry=r,
            buckets=SECONDS,
        )
        self.clients = Gauge(
            "paddock_gateway_stream_clients",
            "Clients connected to this replica's event streams",
            ["transport"],
            registry=r,
        )
        self.replayed = Histogram(
            "paddock_gateway_stream_resume_events",
            "Events replayed to a client that resumed with a cursor, one per resume",
            registry=r,
            buckets=REPLAYED,
        )
        # Series of the fixed label sets exist from the start, at zero.
        self._events = {t: self.events.labels(t) for t in (*EVENT_TYPES, "other")}
        self._finished = {o: self.finished.labels(o) for o in (*TURN_OUTCOMES, "other")}
        self._decisions = {o: self.decisions.labels(o) for o in AUTH_OUTCOMES}
        self._waits = {w: self.waits.labels(w) for w in WAIT_REASONS}
        self._sse = self.clients.labels("sse")

    def session_created(self) -> None:
        self.created.inc()

    def session_deleted(self) -> None:
        self.deleted.inc()

    def turn_started(self) -> None:
        self.started.inc()

    def turn_finished(self, outcome: str) -> None:
        self._finished[bounded(outcome, TURN_OUTCOMES)].inc()

    def driving(self) -> AbstractContextManager[object]:
        return self.running.track_inprogress()

    def events_appended(self, types: Iterable[str]) -> None:
        counts: dict[str, int] = {}
        for kind in types:
            key = bounded(kind, EVENT_TYPES)
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            self._events[key].inc(count)

    def agent_wait(self, reason: str) -> None:
        self._waits[reason].inc()

    def runner_reconnect(self) -> None:
        self.reconnects.inc()

    def auth(self, outcome: str) -> None:
        self._decisions[outcome].inc()

    def redis_call(self, operation: str, seconds: float, *, ok: bool) -> None:
        self.redis.labels(operation, "ok" if ok else "error").observe(seconds)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, code_class(status)).observe(seconds)

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        self._sse.inc()
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            self._sse.dec()

    def resumed(self, replayed: int) -> None:
        self.replayed.observe(replayed)

    def text(self, sessions: int | None) -> bytes:
        """A scrape; `sessions` as just counted in Redis (None: Redis did not answer)."""
        self._sessions.count = sessions
        return generate_latest(self.registry)
