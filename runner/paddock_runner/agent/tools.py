"""The coding agent's tools: a shell command in the workspace, and reading, writing, listing files.

File tools are confined to the workspace: a path that resolves outside it (`..`, an absolute path,
a symlink pointing out) is refused. The shell is not confined by this module (it runs as the
harness user, in the sandbox Pod); it runs in the workspace with a timeout, and only the first
`output_limit` characters of what it prints go back to the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

TOOL_NAMES: Final = ("shell", "read", "write", "ls")
_LS_MAX_ENTRIES: Final = 1000
_SKIP_DIRS: Final = frozenset({".git", "node_modules", "__pycache__", ".venv"})


class ToolError(Exception):
    """A tool refused its arguments; the message goes back to the model."""


@dataclass(frozen=True)
class ToolResult:
    output: str
    exit_code: int | None = None


@dataclass(frozen=True)
class Tool:
    """A tool: what the model sees (name, description, JSON schema of arguments) and its code."""

    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[ToolResult]]

    def openai_spec(self) -> dict[str, Any]:
        """The tool in the chat API's `tools` list."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _params(required: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": d} for name, d in required.items()},
        "required": list(required),
        "additionalProperties": False,
    }


class Workspace:
    """The directory the agent works in, and the tools that act on it."""

    def __init__(self, root: Path, shell_timeout_s: float, output_limit: int) -> None:
        self.root = root.resolve()
        self.shell_timeout_s = shell_timeout_s
        self.output_limit = output_limit

    def tools(self) -> list[Tool]:
        """All tools, in the order the model sees them."""
        return [
            Tool(
                "shell",
                "Run a shell command in the workspace and return its output and exit code.",
                _params({"command": "the command line, run by bash in the workspace"}),
                lambda a: self.shell(_arg(a, "command")),
            ),
            Tool(
                "read",
                "Return the contents of a text file in the workspace.",
                _params({"path": "file path relative to the workspace"}),
                lambda a: self.read(_arg(a, "path")),
            ),
            Tool(
                "write",
                "Create or overwrite a file in the workspace with the given content.",
                _params({"path": "file path relative to the workspace", "content": "new content"}),
                lambda a: self.write(_arg(a, "path"), _arg(a, "content")),
            ),
            Tool(
                "ls",
                "List every file and directory in the workspace (directories end in /).",
                _params({}),
                lambda _: self.ls(),
            ),
        ]

    def resolve(self, path: str) -> Path:
        """The absolute path of `path` relative to the workspace; refused if it leads outside."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            raise ToolError(f"{path!r} is outside the workspace")
        return target

    async def shell(self, command: str) -> ToolResult:
        """Run `command` with bash in the workspace; kill it (and its children) on timeout."""
        process = await asyncio.create_subprocess_exec(
            shutil.which("bash") or "/bin/sh",
            "-c",
            command,
            cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches its children
        )
        assert process.stdout is not None  # noqa: S101 - set by stdout=PIPE
        try:
            output = await asyncio.wait_for(
                _read_capped(process.stdout, self.output_limit), self.shell_timeout_s
            )
        except TimeoutError:
            kill_group(process)
            await process.wait()
            return ToolResult(f"[killed: no exit after {self.shell_timeout_s:g}s]", exit_code=-9)
        finally:
            if process.returncode is None:
                kill_group(process)  # cancelled: the turn is over, so is its command
        return ToolResult(output, exit_code=await process.wait())

    async def read(self, path: str) -> ToolResult:
        """The file's text, cut at the output limit."""
        target = self.resolve(path)
        if not target.is_file():
            raise ToolError(f"{path!r} is not a file")
        text = target.read_text(errors="replace")
        return ToolResult(_cap(text, self.output_limit))

    async def write(self, path: str, content: str) -> ToolResult:
        """Write `content` to the file, creating its directories."""
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return ToolResult(f"wrote {len(content.encode())} bytes to {target.relative_to(self.root)}")

    async def ls(self) -> ToolResult:
        """Every path in the workspace, sorted, directories with a trailing / (VCS dirs skipped)."""
        entries: list[str] = []
        for directory, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            base = Path(directory).relative_to(self.root)
            entries += [f"{base / d}/" for d in dirs] + [str(base / f) for f in files]
            if len(entries) > _LS_MAX_ENTRIES:
                break
        listing = sorted(entries)[:_LS_MAX_ENTRIES]
        more = ["[... more entries]"] if len(entries) > _LS_MAX_ENTRIES else []
        return ToolResult("\n".join(listing + more) if listing else "(the workspace is empty)")


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's group (it was started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise ToolError(f"argument {name!r} (a string) is required")
    return value


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters]"


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> str:
    """Read to EOF, keeping the first `limit` characters (the rest is drained, not kept)."""
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(65536):
        room = max(0, limit - len(kept))
        kept += chunk[:room]
        dropped += len(chunk) - min(room, len(chunk))
    text = kept.decode(errors="replace")
    return text + (f"\n[... {dropped} more bytes]" if dropped else "")
