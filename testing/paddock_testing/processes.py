"""Child processes that serve HTTP on loopback, as the test helpers start them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

import httpx

from paddock_testing.proc import free_port, stop
from paddock_testing.wait import wait_for


class ProcessError(RuntimeError):
    """A child process did not start as expected."""


class HttpProcess:
    """A process serving HTTP on a free loopback port, its output appended to a log file."""

    name = "process"

    def __init__(self, workdir: Path, start_timeout_s: float = 60.0) -> None:
        self.workdir = workdir
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._own_group = False

    @property
    def log_file(self) -> Path:
        """Where the process's output goes (appended to across restarts)."""
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        """The process id."""
        if self._process is None:
            raise ProcessError(f"{self.name} is not running")
        return self._process.pid

    def spawn(self, argv: Sequence[str], env: dict[str, str], own_group: bool = False) -> None:
        """Start `argv`; `own_group` puts it in a new process group that stop() kills whole."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self._own_group = own_group
        self._process = subprocess.Popen(  # noqa: S603 - paddock's own binaries and arguments
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=own_group,
        )

    def wait_healthy(self, path: str) -> httpx.Response:
        """Poll GET `path` until it answers 200; stop the process if it never does."""
        process = self._process
        assert process is not None  # noqa: S101 - spawn() comes first

        def healthy() -> httpx.Response | None:
            if process.poll() is not None:
                code = process.returncode
                raise ProcessError(f"{self.name} exited with {code}; see {self.log_file}")
            response = httpx.get(f"{self.url}{path}", timeout=2)
            return response if response.status_code == 200 else None

        try:
            return wait_for(
                healthy,
                f"{self.name} to answer 200 on {path} (log: {self.log_file})",
                self.start_timeout_s,
                every=0.1,
                tolerate=(httpx.TransportError,),
                error=ProcessError,
            )
        except ProcessError:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the process, as an OOM kill or a node failure would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close()

    def stop(self) -> None:
        """SIGTERM the process and wait (SIGKILL after 15 s); then its group, if it has one."""
        if self._process is not None:
            stop(self._process)
        self._close()

    def _close(self) -> None:
        if self._process is not None and self._own_group:
            # Whatever child outlived the process goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def start(self) -> object:
        """Spawn the process and wait until it serves (each subclass knows how)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
