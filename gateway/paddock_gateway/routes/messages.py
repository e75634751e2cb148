"""Messages: the user's input, each one a turn of the agent."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from paddock_gateway.agents import suspended_by_spec
from paddock_gateway.deps import AllowedAgent, GatewayState, SessionId, SessionStore
from paddock_gateway.errors import ConflictError
from paddock_gateway.models import MessageAccepted, MessageCreate, Problem
from paddock_gateway.routes import ERRORS, PREFIX

router = APIRouter(prefix=PREFIX, tags=["messages"], responses=ERRORS)


@router.post(
    "/{session_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": MessageAccepted, "description": "Already posted: nothing new queued"},
        409: {
            "model": Problem,
            "description": "The id was used for a different message, or the Agent is suspended "
            "by spec.suspend (an Agent suspended for being idle takes the message and wakes)",
        },
    },
)
async def post_message(
    agent: AllowedAgent, session_id: SessionId, body: MessageCreate, *, store: SessionStore,
    gateway: GatewayState, response: Response,
) -> MessageAccepted:  # fmt: skip
    """Queue a message for a turn; posting the same id again is answered but not run again."""
    now = await gateway.agents.read(agent.namespace, agent.name)
    if now.suspended:
        raise ConflictError(suspended_by_spec(agent.namespace, agent.name))
    posted = await store.post(
        agent.namespace, agent.name, session_id,
        message_id=body.id, content=body.content, model=body.model,
    )  # fmt: skip
    # A use of the Agent, duplicates too (a retry may follow a write that failed): wakes it if
    # it was suspended for being idle.
    await gateway.activity.touch(agent.namespace, agent.name, now)
    if posted.duplicate:
        response.status_code = status.HTTP_200_OK
    else:
        await gateway.supervisor.kick(session_id)
    return MessageAccepted(
        message_id=body.id,
        turn_id=posted.turn_id,
        duplicate=posted.duplicate,
        event_id=posted.event_id,
    )
