"""The command adapter: any command-line harness, run headless once per turn.

The user's message goes in as an argument (`{message}` in the argv, else appended) or on stdin;
each line the command prints (stdout and stderr together) becomes an `output` event, and its exit
code ends the turn. The command runs in the workspace, where it keeps whatever state it wants
between turns. PADDOCK_SESSION_ID and PADDOCK_TURN_ID tell it which turn it is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from paddock.protocol import TurnRequest
from paddock_runner.harness import Emit, HarnessError

_MAX_LINE = 64 * 1024
_TERM_GRACE_S = 5.0


class CommandHarness:
    """Runs `argv` for each turn; see the module's docstring."""

    def __init__(
        self,
        argv: list[str],
        workspace: Path,
        message_via: Literal["argument", "stdin"] = "argument",
        timeout_s: float = 3600,
    ) -> None:
        self.argv = argv
        self.workspace = workspace
        self.message_via = message_via
        self.timeout_s = timeout_s

    def command_line(self, message: str) -> list[str]:
        """The argv for one turn's message."""
        if self.message_via == "stdin":
            return list(self.argv)
        if any("{message}" in arg for arg in self.argv):
            return [arg.replace("{message}", message) for arg in self.argv]
        return [*self.argv, message]

    async def run_turn(self, request: TurnRequest, emit: Emit) -> dict[str, Any]:
        """Run the command on the turn's last user message, streaming its lines."""
        message = next(
            (m.content or "" for m in reversed(request.messages) if m.role == "user"), ""
        )
        env = {**os.environ, "PADDOCK_SESSION_ID": request.session_id}
        env["PADDOCK_TURN_ID"] = request.turn_id
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command_line(message),
                cwd=self.workspace,
                env=env,
                stdin=asyncio.subprocess.PIPE
                if self.message_via == "stdin"
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel stops its children too
            )
        except OSError as error:
            raise HarnessError(f"cannot start {self.argv[0]}: {error}") from error
        try:
            async with asyncio.timeout(self.timeout_s):
                if process.stdin is not None:
                    process.stdin.write(message.encode())
                    with contextlib.suppress(ConnectionError):
                        await process.stdin.drain()
                    process.stdin.close()
                assert process.stdout is not None  # noqa: S101 - set by stdout=PIPE
                async for line in _lines(process.stdout):
                    emit("output", {"text": line})
                code = await process.wait()
        except TimeoutError:
            await _stop(process)
            raise HarnessError(f"no exit after {self.timeout_s:g}s: stopped") from None
        finally:
            if process.returncode is None:
                await _stop(process)  # cancelled
        if code != 0:
            raise HarnessError(f"{self.argv[0]} exited with {code}", exit_code=code)
        return {"exit_code": code}


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines without their newline; a line longer than _MAX_LINE comes in pieces."""
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
        while len(pending) > _MAX_LINE:
            yield pending[:_MAX_LINE].decode(errors="replace")
            pending = pending[_MAX_LINE:]
    if pending:
        yield pending.decode(errors="replace")


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, then SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), _TERM_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
