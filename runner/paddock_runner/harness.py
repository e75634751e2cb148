"""What the runner drives: something that runs one turn and reports it as events."""

from __future__ import annotations

from typing import Any, Protocol

from paddock.protocol import EventType, TurnRequest


class Emit(Protocol):
    """Append one event to the turn (the runner numbers it and hands it to readers)."""

    def __call__(self, type: EventType, data: dict[str, Any]) -> None: ...


class Harness(Protocol):
    """Runs turns. Cancellation arrives as asyncio.CancelledError; clean up and let it propagate.

    `run_turn` returns extra fields for the turn_end event (e.g. a command's exit_code) and
    raises HarnessError (or anything else) when the turn failed.
    """

    async def run_turn(self, request: TurnRequest, emit: Emit) -> dict[str, Any]: ...


class HarnessError(Exception):
    """The turn failed in a way the user should read about (the message becomes an error event)."""

    def __init__(self, message: str, **end: Any) -> None:
        super().__init__(message)
        self.end = end
        """Extra fields for the turn_end event."""
