"""Request and response bodies of the gateway's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from paddock.protocol import Id

MAX_MESSAGE_CHARS = 65_536

ModelName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(_Body):
    """Open a session on the Agent."""

    model: ModelName | None = None
    """Model for this session's turns; the Agent's default when unset."""


class Session(BaseModel):
    """A session with an Agent."""

    id: str
    namespace: str
    agent: str
    created: datetime
    state: Literal["idle", "running", "agent_restarting", "agent_waking"]
    turns: int
    """Turns completed so far."""
    model: str | None = None


class SessionList(BaseModel):
    """The Agent's sessions, oldest first."""

    items: list[Session]


class MessageCreate(_Body):
    """A user message; `id` is chosen by the client, and posting it again does nothing new."""

    id: Id
    content: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
    model: ModelName | None = None
    """Model for this turn only."""


class MessageAccepted(BaseModel):
    """The message is queued for a turn (or was already)."""

    message_id: str
    turn_id: str
    duplicate: bool
    """True when this id had been posted before: nothing new was queued."""
    event_id: str | None = None
    """The cursor of the user_message event (only for a message queued by this request)."""


class Problem(BaseModel):
    """What went wrong, in one sentence."""

    detail: str
