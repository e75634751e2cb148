"""The runner's HTTP API: the session protocol of paddock.protocol, on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from paddock.protocol import RunnerHealth, TurnAccepted, TurnRequest, sse_message
from paddock.sse import KEEPALIVE
from paddock_runner.turns import SessionBusyError, TurnLog, Turns

KEEPALIVE_S = 15.0


def get_turns(request: Request) -> Turns:
    """The process's turn registry."""
    turns: Turns = request.app.state.turns
    return turns


TurnRegistry = Annotated[Turns, Depends(get_turns)]
router = APIRouter()


def _known(turns: Turns, turn_id: str) -> TurnLog:
    turn = turns.get(turn_id)
    if turn is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"turn {turn_id} is unknown to runner incarnation {turns.incarnation}",
        )
    return turn


@router.get("/healthz")
async def health(turns: TurnRegistry) -> RunnerHealth:
    """Alive, which incarnation, and which sessions have a turn running."""
    return RunnerHealth(incarnation=turns.incarnation, busy_sessions=turns.busy_sessions())


@router.post("/v1/turns", status_code=status.HTTP_202_ACCEPTED)
async def start_turn(body: TurnRequest, turns: TurnRegistry) -> TurnAccepted:
    """Start a turn (or acknowledge it again: idempotent on turn_id)."""
    try:
        turns.start(body)
    except SessionBusyError as busy:
        raise HTTPException(status.HTTP_409_CONFLICT, str(busy)) from busy
    return TurnAccepted(turn_id=body.turn_id, incarnation=turns.incarnation)


@router.get("/v1/turns/{turn_id}/events")
async def turn_events(
    turn_id: str, turns: TurnRegistry, after: Annotated[int, Query(ge=0)] = 0
) -> StreamingResponse:
    """The turn's events after seq `after`, as SSE, ending after turn_end."""
    turn = _known(turns, turn_id)

    async def stream() -> AsyncIterator[bytes]:
        async for event in turn.follow(after, idle_s=KEEPALIVE_S):
            yield KEEPALIVE if event is None else sse_message(event)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/v1/turns/{turn_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_turn(turn_id: str, turns: TurnRegistry) -> dict[str, str]:
    """Cancel the turn; it ends with turn_end(reason=cancelled) unless it already ended."""
    _known(turns, turn_id)
    turns.cancel(turn_id)
    return {"turn_id": turn_id}


def create_app(turns: Turns) -> FastAPI:
    """The app, serving `turns`; running turns are cancelled when it shuts down."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await turns.close()

    app = FastAPI(
        title="paddock runner", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.turns = turns
    app.include_router(router)
    return app
