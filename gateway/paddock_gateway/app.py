"""The FastAPI application: parts built at start-up, errors turned into HTTP answers here only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paddock_gateway.access import Access
from paddock_gateway.activity import Activity
from paddock_gateway.agents import Agents
from paddock_gateway.driver import TurnDriver
from paddock_gateway.errors import GatewayError, UnauthenticatedError
from paddock_gateway.kube import GatewayKubeClient
from paddock_gateway.metrics import GatewayMetrics, Metrics
from paddock_gateway.routes import events, health, messages, sessions
from paddock_gateway.routes import metrics as metrics_route
from paddock_gateway.runner_client import RunnerPool
from paddock_gateway.settings import GatewaySettings
from paddock_gateway.state import Gateway
from paddock_gateway.store import SessionInfo, Store
from paddock_gateway.supervisor import Supervisor

MAX_BODY_BYTES = 1 << 20


def connect_redis(settings: GatewaySettings) -> Redis:
    """A client that retries briefly through a Redis restart."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        decode_responses=True,
        max_connections=settings.redis_max_connections,
        timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


def create_app(
    settings: GatewaySettings, *, kube: GatewayKubeClient | None = None, redis: Redis | None = None
) -> FastAPI:
    """The gateway; tests hand in their own Kubernetes client or Redis client."""
    metrics = GatewayMetrics() if settings.metrics else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kube_api = kube or GatewayKubeClient.connect(
            settings.kube_url, settings.kube_token_file, settings.kube_ca_file
        )
        redis_client = redis or connect_redis(settings)
        store = Store(
            redis_client,
            settings.max_events_per_session,
            settings.session_idle_seconds,
            settings.deleted_grace_seconds,
            metrics,
        )
        agents = Agents(kube_api, settings.auth_cache_seconds)
        activity = Activity(kube_api)
        runners = RunnerPool()

        def make_driver(session: SessionInfo, token: str) -> TurnDriver:
            return TurnDriver(
                store, agents, activity, runners, settings,
                session=session, token=token, metrics=metrics,
            )  # fmt: skip

        supervisor = Supervisor(store, make_driver, settings.lease_seconds, settings.sweep_seconds)
        access = Access(kube_api, settings.auth_cache_seconds, settings.token_audiences, metrics)
        app.state.gateway = Gateway(
            settings, store, access, agents, activity, runners, supervisor, metrics
        )
        supervisor.start()
        try:
            yield
        finally:
            await supervisor.stop()
            await activity.aclose()
            await runners.aclose()
            if kube is None:
                await kube_api.aclose()
            if redis is None:
                await redis_client.aclose()

    app = FastAPI(
        title="paddock gateway",
        version="v1",
        description="Sessions with paddock Agents that survive restarts of the Agent's Pod.",
        lifespan=lifespan,
    )
    for module in (sessions, messages, events, health):
        app.include_router(module.router)
    app.add_exception_handler(GatewayError, _gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(RedisError, _redis_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    if isinstance(metrics, GatewayMetrics):
        app.include_router(metrics_route.router(metrics))
        app.add_middleware(RequestTimer, metrics=metrics)  # outermost: a 413 is timed too
    return app


async def _gateway_error(_: Request, error: GatewayError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, UnauthenticatedError) else None
    return JSONResponse({"detail": error.detail}, status_code=error.status, headers=headers)


async def _redis_error(_: Request, error: RedisError) -> JSONResponse:
    return JSONResponse({"detail": f"session store unavailable: {error}"}, status_code=503)


class BodyLimit:
    """Refuse request bodies that declare more than `limit` bytes (413) before reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.limit:
                answer = JSONResponse(
                    {"detail": f"request body over {self.limit} bytes"}, status_code=413
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestTimer:
    """Time each HTTP request to its response's status line and headers (an event stream stays
    open after), labelled by the route's template, never by the path a client sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        answered = False

        async def timed(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._record(scope, message["status"], start)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        except Exception:
            if not answered:  # the server answers 500
                self._record(scope, 500, start)
            raise

    def _record(self, scope: Scope, status: int, start: float) -> None:
        # The router put the matched route into the scope; no route: a path the API lacks.
        template = getattr(scope.get("route"), "path", None)
        route = template if isinstance(template, str) else "other"
        self.metrics.request(scope["method"], route, status, time.perf_counter() - start)
