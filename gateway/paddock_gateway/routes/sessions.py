"""Sessions on an Agent: open, list, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from paddock_gateway.deps import AllowedAgent, GatewayState, SessionId, SessionStore
from paddock_gateway.driver import cancel_turn
from paddock_gateway.models import Session, SessionCreate, SessionList
from paddock_gateway.routes import ERRORS, PREFIX
from paddock_gateway.store import SessionInfo

router = APIRouter(prefix=PREFIX, tags=["sessions"], responses=ERRORS)


def _session(info: SessionInfo) -> Session:
    return Session(
        id=info.id,
        namespace=info.namespace,
        agent=info.agent,
        created=info.created,
        state=info.state,
        turns=info.turns,
        model=info.model,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_session(
    agent: AllowedAgent, store: SessionStore, body: SessionCreate | None = None
) -> Session:
    """Open a new session on the Agent."""
    model = body.model if body else None
    return _session(await store.create(agent.namespace, agent.name, model))


@router.get("")
async def list_sessions(agent: AllowedAgent, store: SessionStore) -> SessionList:
    """The Agent's sessions, oldest first."""
    return SessionList(
        items=[_session(s) for s in await store.sessions(agent.namespace, agent.name)]
    )


@router.get("/{session_id}")
async def get_session(agent: AllowedAgent, session_id: SessionId, store: SessionStore) -> Session:
    """One session."""
    return _session(await store.get(agent.namespace, agent.name, session_id))


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(
    agent: AllowedAgent, session_id: SessionId, store: SessionStore, gateway: GatewayState
) -> Response:
    """End the session: its running turn is cancelled, open event streams get `end`."""
    turn_id = await store.delete(agent.namespace, agent.name, session_id)
    if turn_id:
        await cancel_turn(gateway.agents, gateway.runners, agent.namespace, agent.name, turn_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
