"""Waiting in tests and benchmarks: for a condition to hold, for a process to answer over HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    what: str,
    timeout: float = 30,
    *,
    every: float = 0.2,
    tolerate: tuple[type[Exception], ...] = (),
    detail: Callable[[], str] | None = None,
    error: Callable[[str], BaseException] = AssertionError,
) -> T:
    """Poll check until it returns something truthy; fail naming what never happened.

    Errors of the tolerate types count as "not yet" (the last one is named if time runs out);
    any other error of check's ends the wait at once. When time runs out, detail() (a process's
    log, what is still there) is added to the message, and the failure is error(message).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
        except tolerate as failure:
            last = failure
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            said = f" (last error: {last})" if last else ""
            more = f"\n{detail()}" if detail else ""
            raise error(f"timed out after {timeout:.0f} s waiting for {what}{said}{more}")
        time.sleep(every)


async def wait_until(
    check: Callable[[], T | None], what: str, within: float = 30, *, every: float = 0.02
) -> T:
    """wait_for inside an event loop: poll check, letting the loop run in between."""
    deadline = time.monotonic() + within
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(every)
    return value


def wait_http(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0
) -> None:
    """Return once `url` answers 200; fail early if `process` exits first."""

    def answers() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}")
        return httpx.get(url, timeout=1).status_code == 200

    wait_for(answers, f"{url} to answer 200", timeout, every=0.1, tolerate=(httpx.HTTPError,))
