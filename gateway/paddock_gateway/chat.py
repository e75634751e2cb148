"""`paddock chat`: talk to an Agent from a terminal, through the gateway."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TextIO

from paddock_gateway.client import ClientError, Event, GatewayClient


def _assistant(data: dict[str, Any]) -> str:
    if data.get("role") == "assistant" and data.get("content"):
        return f"assistant: {data['content']}\n"
    return ""


_RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "token": lambda d: str(d.get("text", "")),
    "output": lambda d: f"{d.get('text', '')}\n",
    "message": _assistant,
    "tool_call": lambda d: f"[tool {d.get('name')}] {d.get('arguments', '')}\n",
    "tool_result": lambda d: f"[result] {str(d.get('output', ''))[:2000]}\n",
    "error": lambda d: f"[error] {d.get('message', '')}\n",
    "agent_restarting": lambda _: "[agent restarting: waiting for it to come back]\n",
    "agent_waking": lambda _: "[agent waking: it was idle]\n",
    "agent_ready": lambda _: "[agent back: resuming the turn]\n",
    "reset": lambda _: "[older events were trimmed: showing from the oldest kept]\n",
    "turn_end": lambda d: f"[turn {d.get('reason', 'done')}]\n",
    "end": lambda _: "[session ended]\n",
}


def render(event: Event) -> str:
    """How an event reads in a terminal ('' for those not worth a line)."""
    show = _RENDER.get(event.type)
    return show(event.data.get("data", {})) if show else ""


async def _show(client: GatewayClient, session_id: str, after: str | None, out: TextIO) -> None:
    async for event in client.events(session_id, after):
        text = render(event)
        if text:
            out.write(text)
            out.flush()


async def chat(
    client: GatewayClient, session_id: str | None, after: str | None, source: TextIO,
    out: TextIO,
) -> str:  # fmt: skip
    """Open (or resume) a session, stream its events, send each line of `source`; its id."""
    if session_id is None:
        session = await client.create_session()
        out.write(f"[session {session['id']}]\n")
    else:
        session = await client.get_session(session_id)
        out.write(f"[resuming session {session_id}]\n")
    session_id, turns = str(session["id"]), int(session["turns"])
    out.flush()
    shower = asyncio.create_task(_show(client, session_id, after, out))
    try:
        while line := await asyncio.to_thread(source.readline):
            if line.strip():
                await client.send(session_id, line.rstrip("\n"))
                turns += 1
            if shower.done():
                break
        if not shower.done() and not source.isatty():
            # Piped input: stay until the last turn has streamed out, then stop.
            await _drain(client, session_id, turns)
    finally:
        shower.cancel()
        await asyncio.gather(shower, return_exceptions=True)
    return session_id


async def _drain(client: GatewayClient, session_id: str, turns: int, poll: float = 0.2) -> None:
    """Wait until the session has completed `turns` turns and their events have streamed."""
    while int((await client.get_session(session_id))["turns"]) < turns:  # noqa: ASYNC110 - remote state
        await asyncio.sleep(poll)
    await asyncio.sleep(poll)


def main(urls: list[str], token: str, namespace: str, agent: str, session_id: str | None) -> int:
    """Run a chat in this terminal."""
    client = GatewayClient(urls, token, namespace, agent)

    async def run() -> None:
        try:
            await chat(client, session_id, None, sys.stdin, sys.stdout)
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    except ClientError as error:
        sys.stderr.write(f"paddock chat: {error}\n")
        return 1
    return 0
