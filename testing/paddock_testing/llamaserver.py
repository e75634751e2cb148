"""A real llama-server in router mode on loopback, for tests and benchmarks.

It runs with the arguments paddock.engines renders for the Pod (router mode over a models
directory, --jinja), on a free port, with its download cache in a scratch directory so models
a developer has cached elsewhere do not show up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from paddock.engines import llama_server_args
from paddock_testing.processes import HttpProcess, ProcessError

BINARY_ENV = "PADDOCK_LLAMA_SERVER"


class LlamaServerError(ProcessError):
    """llama-server is missing, or did not start as expected."""


def llama_server_binary(env: dict[str, str] | None = None) -> Path:
    """The llama-server that hack/llama-server.sh built, from PADDOCK_LLAMA_SERVER."""
    value = (dict(os.environ) if env is None else env).get(BINARY_ENV)
    if not value:
        raise LlamaServerError(f'{BINARY_ENV} not set: run `eval "$(hack/llama-server.sh)"` first')
    path = Path(value)
    if not os.access(path, os.X_OK):
        raise LlamaServerError(f"{BINARY_ENV}={path} is not an executable file")
    return path


class LlamaServer(HttpProcess):
    """llama-server serving the GGUF files of `models_dir` through its router.

    `extra` arguments come last; `--model FILE` among them makes it a single-model server instead.
    """

    name = "llama-server"

    def __init__(
        self,
        binary: Path,
        models_dir: Path,
        workdir: Path,
        extra: Sequence[str] = (),
        start_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(workdir, start_timeout_s)
        self.binary = binary
        self.models_dir = models_dir
        self.extra = list(extra)
        self.model_url = f"{self.url}/v1"
        """OpenAI base URL, as PADDOCK_MODEL_URL has it; `url` is the root (/health, /models)."""

    def start(self) -> None:
        """Start the router and wait until /health answers."""
        cache = self.workdir / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        args = llama_server_args(
            models_dir=str(self.models_dir), host="127.0.0.1", port=self.port, extra=self.extra
        )
        # Its own process group: stopping it stops the model instances (its children) too.
        self.spawn([str(self.binary), *args], {"LLAMA_CACHE": str(cache)}, own_group=True)
        self.wait_healthy("/health")
