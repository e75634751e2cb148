"""The session protocol between the gateway and the runner in the harness container: one definition.

The runner serves HTTP on paddock.sandbox.RUNNER_PORT:

    GET  /healthz                              -> RunnerHealth
    POST /v1/turns            TurnRequest      -> 202 TurnAccepted (idempotent on turn_id)
    GET  /v1/turns/{turn_id}/events?after=SEQ  -> text/event-stream of RunnerEvent,
                                                  `id:` = seq, ends after a turn_end event
    POST /v1/turns/{turn_id}/cancel            -> 202; the turn ends with turn_end(reason=cancelled)

The runner holds no state across restarts: each start has a new `incarnation`, and the gateway
re-sends an interrupted turn with the session's history. Within one incarnation, `seq` counts the
turn's events from 1 without gaps, so a reader that lost its connection resumes with `after=` and
(incarnation, seq) names every event exactly once. A second turn of a session while one is running
is refused with 409. A turn the runner does not know (for instance one from before a restart)
answers 404 on its events and cancel routes: the gateway re-sends it. An event stream that ends
without turn_end was interrupted (the runner is stopping, or died): the same applies.

Each event goes out as one SSE message (see `sse_message`): `id:` is its seq and `data:` the
RunnerEvent as JSON; lines starting with `:` are keep-alive comments. paddock.sse reads them.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from paddock.sse import format_event

PROTOCOL_VERSION: Final = "v1"

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCallFunction(_Wire):
    name: str
    arguments: str
    """JSON text, as the OpenAI chat API carries it."""


class ToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Wire):
    """A chat message in the OpenAI chat-completions shape."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class TurnRequest(_Wire):
    """Run one turn: the session's whole history so far, ending with the new user message."""

    session_id: Id
    turn_id: Id
    messages: Annotated[list[Message], Field(min_length=1)]
    model: str | None = None
    """Model to use for this turn; the Agent's default when unset."""


class TurnAccepted(_Wire):
    turn_id: Id
    incarnation: str


EventType = Literal[
    "token",  # data: {"text": str}, a piece of the assistant's reply as the model streams it
    "message",  # data: Message as a dict, a complete message to append to the history
    "tool_call",  # data: {"id", "name", "arguments"}
    "tool_result",  # data: {"id", "output", "exit_code"?}
    "output",  # data: {"text": str}, a line from a command-line harness
    "error",  # data: {"message": str}
    "turn_end",  # data: {"reason": "done" | "cancelled" | "error", "exit_code"?: int}; the last
    # event of every turn; exit_code is the command-line harness's, when one ran
]


class RunnerEvent(_Wire):
    """One event of a turn, named by (incarnation, seq)."""

    incarnation: str
    seq: Annotated[int, Field(ge=1)]
    turn_id: Id
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)


class RunnerHealth(_Wire):
    status: Literal["ok"] = "ok"
    incarnation: str
    protocol: str = PROTOCOL_VERSION
    busy_sessions: list[str] = Field(default_factory=list)


def sse_message(event: RunnerEvent) -> bytes:
    """One event as a server-sent-events message: `id:` is the seq, `data:` the event's JSON."""
    return format_event(event.model_dump_json(), id=str(event.seq))
