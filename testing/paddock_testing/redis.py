"""A real redis-server on loopback for tests and benchmarks: its own directory, AOF on."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import IO, Self

from paddock_testing.proc import free_port, stop
from paddock_testing.wait import wait_for


class RedisServerError(RuntimeError):
    """redis-server is missing, did not start, or did not stop."""


class RedisServer:
    """redis-server as a child process; stop() and start() again keep its data (AOF, same dir)."""

    def __init__(self, workdir: Path, port: int | None = None, fsync: str = "always") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError("redis-server not found: run hack/host-deps.sh")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.fsync = fsync
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and return once it answers PING."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = (self.workdir / "redis.log").open("ab")
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--save",
            "",
            "--maxclients",
            "4000",
        ]
        self._process = subprocess.Popen(  # noqa: S603 - redis-server from PATH, argv built here
            argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = self._process

        def answers() -> bool:
            if process.poll() is not None:
                raise RedisServerError(f"redis-server exited with {process.returncode}")
            return self.ping()

        what = f"redis-server to answer PING on {self.port}"
        wait_for(answers, what, timeout, every=0.05, error=RedisServerError)

    def ping(self) -> bool:
        """Whether the server answers PING (and has finished loading its data)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGTERM (it flushes the AOF), or SIGKILL with kill=True."""
        if self._process is not None:
            if kill:
                self._process.kill()
                self._process.wait()
            else:
                stop(self._process)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
