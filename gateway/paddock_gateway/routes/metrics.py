"""Prometheus metrics of this replica (and the sessions in Redis): no token needed, no session
data in them. Mounted only when PADDOCK_GATEWAY_METRICS is on."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from redis.exceptions import RedisError

from paddock_gateway.deps import SessionStore
from paddock_gateway.metrics import CONTENT_TYPE, GatewayMetrics

log = logging.getLogger(__name__)


def router(metrics: GatewayMetrics) -> APIRouter:
    """GET /metrics, serving `metrics` (not part of the API's schema)."""
    routes = APIRouter(tags=["metrics"])

    @routes.get("/metrics", include_in_schema=False)
    async def scrape(store: SessionStore) -> Response:
        """The Prometheus text format."""
        try:
            sessions: int | None = await store.count()
        except RedisError as error:  # the rest is still worth having: the gauge is left out
            log.warning("sessions not counted for /metrics: %s", error)
            sessions = None
        return Response(metrics.text(sessions), media_type=CONTENT_TYPE)

    return routes
