"""A scripted runner that speaks paddock.protocol, for tests and benchmarks of the gateway.

It is a real process (`python -m paddock_testing.scripted_runner --port N`) with no model behind
it: the last user message of a turn is its script.

    emit N [DELAY_MS]   N `output` events {"text": "line <i>"}, DELAY_MS apart (0: at once)
    anything else       one `output` event echoing the text

Every turn starts with an `output` event {"text": "history <k>"} (k: messages received), so a test
can see that a re-sent turn carried the session's history, and ends with an assistant `message`
and `turn_end`.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from paddock.protocol import (
    EventType,
    RunnerEvent,
    RunnerHealth,
    TurnAccepted,
    TurnRequest,
    sse_message,
)

_BATCH = 500


@dataclass
class _Turn:
    request: TurnRequest
    events: list[bytes] = field(default_factory=list)
    done: bool = False
    cancelled: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedRunner:
    """The protocol's four routes over an in-memory table of turns."""

    def __init__(self, incarnation: str | None = None) -> None:
        self.incarnation = incarnation or uuid.uuid4().hex[:12]
        self.turns: dict[str, _Turn] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(
            routes=[
                Route("/healthz", self.health),
                Route("/v1/turns", self.start, methods=["POST"]),
                Route("/v1/turns/{turn_id}/events", self.events),
                Route("/v1/turns/{turn_id}/cancel", self.cancel, methods=["POST"]),
            ]
        )

    async def health(self, _: Request) -> Response:
        busy = sorted({t.request.session_id for t in self.turns.values() if not t.done})
        body = RunnerHealth(incarnation=self.incarnation, busy_sessions=busy)
        return JSONResponse(body.model_dump())

    async def start(self, request: Request) -> Response:
        turn_request = TurnRequest.model_validate_json(await request.body())
        if turn_request.turn_id not in self.turns:
            running = [
                t
                for t in self.turns.values()
                if t.request.session_id == turn_request.session_id and not t.done
            ]
            if running:
                return JSONResponse({"detail": "a turn of this session is running"}, 409)
            turn = _Turn(turn_request)
            self.turns[turn_request.turn_id] = turn
            task = asyncio.create_task(self._play(turn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        accepted = TurnAccepted(turn_id=turn_request.turn_id, incarnation=self.incarnation)
        return JSONResponse(accepted.model_dump(), 202)

    async def cancel(self, request: Request) -> Response:
        turn = self.turns.get(request.path_params["turn_id"])
        if turn is None:
            return JSONResponse({"detail": "no such turn"}, 404)
        turn.cancelled = True
        return JSONResponse({}, 202)

    async def events(self, request: Request) -> Response:
        turn = self.turns.get(request.path_params["turn_id"])
        if turn is None:
            return JSONResponse({"detail": "no such turn"}, 404)
        after = int(request.query_params.get("after", "0"))
        return StreamingResponse(self._stream(turn, after), media_type="text/event-stream")

    async def _stream(self, turn: _Turn, after: int) -> AsyncIterator[bytes]:
        sent = after
        while True:
            turn.changed.clear()
            if len(turn.events) > sent:
                chunk = turn.events[sent:]
                sent = len(turn.events)
                yield b"".join(chunk)
                continue
            if turn.done:
                return
            await turn.changed.wait()

    def _emit(self, turn: _Turn, kind: EventType, data: dict[str, Any]) -> None:
        seq = len(turn.events) + 1
        event = RunnerEvent(
            incarnation=self.incarnation,
            seq=seq,
            turn_id=turn.request.turn_id,
            type=kind,
            data=data,
        )
        turn.events.append(sse_message(event))
        turn.changed.set()

    async def _play(self, turn: _Turn) -> None:
        messages = turn.request.messages
        self._emit(turn, "output", {"text": f"history {len(messages)}"})
        words = (messages[-1].content or "").split()
        count = 0
        if len(words) >= 2 and words[0] == "emit" and words[1].isdigit():
            count = int(words[1])
            delay = int(words[2]) / 1000 if len(words) > 2 and words[2].isdigit() else 0.0
            for i in range(1, count + 1):
                if turn.cancelled:
                    break
                self._emit(turn, "output", {"text": f"line {i}"})
                if delay:
                    await asyncio.sleep(delay)
                elif i % _BATCH == 0:
                    await asyncio.sleep(0)
        else:
            self._emit(turn, "output", {"text": " ".join(words)})
        reason = "cancelled" if turn.cancelled else "done"
        self._emit(turn, "message", {"role": "assistant", "content": f"done {count}"})
        self._emit(turn, "turn_end", {"reason": reason})
        turn.done = True
        turn.changed.set()


def main(argv: list[str] | None = None) -> None:
    """Serve a scripted runner on 127.0.0.1."""
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--incarnation")
    parsed = args.parse_args(argv)
    runner = ScriptedRunner(parsed.incarnation)
    uvicorn.run(runner.app(), host="127.0.0.1", port=parsed.port, log_level="warning")


if __name__ == "__main__":
    main()
