"""A session's events as server-sent events, resumable from any cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from paddock_gateway.deps import AllowedAgent, GatewayState, SessionId, SessionStore
from paddock_gateway.errors import BadRequestError
from paddock_gateway.events import EventReader
from paddock_gateway.models import Problem
from paddock_gateway.routes import ERRORS, PREFIX

router = APIRouter(prefix=PREFIX, tags=["events"], responses=ERRORS)

Cursor = Annotated[str | None, Query(max_length=64, description="Resume after this event id")]


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Events, each with `id:` (the cursor); `reset` when the cursor was "
            "trimmed away; `end` when the session is deleted; keep-alive comments when idle",
        },
        400: {"model": Problem, "description": "The cursor is not an event id of this session"},
    },
)
async def stream_events(
    agent: AllowedAgent, session_id: SessionId, *, store: SessionStore, gateway: GatewayState,
    after: Cursor = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:  # fmt: skip
    """History after the cursor, then live events; resume with Last-Event-ID or ?after=."""
    if after is not None and last_event_id is not None and after != last_event_id:
        raise BadRequestError("after and Last-Event-ID disagree: send one cursor")
    await store.get(agent.namespace, agent.name, session_id)
    reader = EventReader(store, session_id, gateway.settings.keepalive_seconds, gateway.metrics)
    body = await reader.start(after or last_event_id)
    # A client watching is a use of the Agent, until it goes away.
    heartbeat = gateway.activity.heartbeat(agent.namespace, agent.name)
    return StreamingResponse(
        gateway.metrics.stream(heartbeat.around(body)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
