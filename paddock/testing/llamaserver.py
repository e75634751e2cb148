"""A real llama-server in router mode on loopback, for tests and benchmarks.

It runs with the arguments paddock.engines renders for the Pod (router mode over a models
directory, --jinja), on a free port, with its download cache in a scratch directory so models
a developer has cached elsewhere do not show up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

import httpx

from paddock.engines import llama_server_args
from paddock.testing.apiserver import free_port

BINARY_ENV = "PADDOCK_LLAMA_SERVER"


class LlamaServerError(RuntimeError):
    """llama-server is missing, or did not start or stop as expected."""


def llama_server_binary(env: dict[str, str] | None = None) -> Path:
    """The llama-server that hack/llama-server.sh built, from PADDOCK_LLAMA_SERVER."""
    value = (dict(os.environ) if env is None else env).get(BINARY_ENV)
    if not value:
        raise LlamaServerError(f'{BINARY_ENV} not set: run `eval "$(hack/llama-server.sh)"` first')
    path = Path(value)
    if not os.access(path, os.X_OK):
        raise LlamaServerError(f"{BINARY_ENV}={path} is not an executable file")
    return path


class LlamaServer:
    """llama-server serving the GGUF files of `models_dir` through its router."""

    def __init__(
        self,
        binary: Path,
        models_dir: Path,
        workdir: Path,
        extra: Sequence[str] = (),
        start_timeout_s: float = 60.0,
    ) -> None:
        self.binary = binary
        self.models_dir = models_dir
        self.workdir = workdir
        self.extra = list(extra)
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        """Root URL: /health, /models/load, /v1/... ."""
        self.model_url = f"{self.url}/v1"
        """OpenAI base URL, as PADDOCK_MODEL_URL carries it."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The router's process id (model instances are its children)."""
        if self._process is None:
            raise LlamaServerError("llama-server is not running")
        return self._process.pid

    @property
    def log_file(self) -> Path:
        """Where the server's output goes."""
        return self.workdir / "llama-server.log"

    def start(self) -> None:
        """Start the router and wait until /health answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cache = self.workdir / "cache"
        cache.mkdir(exist_ok=True)
        args = llama_server_args(
            models_dir=str(self.models_dir), host="127.0.0.1", port=self.port, extra=self.extra
        )
        self._log = self.log_file.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [str(self.binary), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LLAMA_CACHE": str(cache)},
            start_new_session=True,  # its own group, so stop() reaches the model instances too
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LlamaServerError(f"llama-server exited early; see {self.log_file}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise LlamaServerError(f"llama-server not healthy in {self.start_timeout_s}s")

    def stop(self) -> None:
        """Stop the router and its model instances."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None:
            # Whatever model instance outlived the router goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
