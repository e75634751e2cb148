"""Waiting in tests and benchmarks: for a condition to hold, for a process to answer over HTTP."""

from __future__ import annotations

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
) -> T:
    """Poll check until it returns something truthy; fail naming what never happened.

    Errors of the tolerate types count as "not yet" (the last one is named if time runs out).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
        except tolerate as error:
            last = error
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            said = f" (last error: {last})" if last else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{said}")
        time.sleep(every)


def wait_http(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0
) -> None:
    """Return once `url` answers 200; fail early if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")
