"""The gateway's side of the session protocol (paddock.protocol): one client per runner URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from paddock.protocol import RunnerEvent, RunnerHealth, TurnAccepted, TurnRequest
from paddock.sse import SseParser


class RunnerGoneError(Exception):
    """The runner did not answer, or its stream broke off before turn_end."""


class RunnerClient:
    """Starts turns on a runner and reads their events."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, base_url: str) -> RunnerClient:
        """A client for the runner at `base_url` (the Agent's status.endpoint)."""
        timeout = httpx.Timeout(10.0, read=None)
        return cls(httpx.AsyncClient(base_url=base_url, timeout=timeout))

    async def aclose(self) -> None:
        """Close its connections."""
        await self.client.aclose()

    async def health(self, limit: float = 5.0) -> RunnerHealth:
        """The runner's health, which names its incarnation."""
        response = await self._call("runner health", "GET", "/healthz", timeout=limit)
        return RunnerHealth.model_validate_json(response.content)

    async def start(self, request: TurnRequest) -> TurnAccepted:
        """Start the turn (idempotent on turn_id); the answer names the incarnation running it."""
        response = await self._call(
            f"starting turn {request.turn_id}", "POST", "/v1/turns",
            content=request.model_dump_json(exclude_none=True),
            headers={"content-type": "application/json"},
        )  # fmt: skip
        return TurnAccepted.model_validate_json(response.content)

    async def _call(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request that must succeed; RunnerGoneError (saying what it was) if it does not."""
        try:
            response = await self.client.request(method, url, **kwargs)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise RunnerGoneError(f"{what}: {error!r}") from error
        return response

    async def cancel(self, turn_id: str, limit: float = 5.0) -> None:
        """Ask the runner to end the turn (best effort: a runner that does not answer, or does
        not know the turn, has nothing of it running)."""
        try:
            await self.client.post(f"/v1/turns/{turn_id}/cancel", timeout=limit)
        except httpx.HTTPError:
            return

    async def events(
        self, turn_id: str, after: int
    ) -> AsyncIterator[list[tuple[RunnerEvent, str]]]:
        """The turn's events after `after`, in the batches they arrive in, until turn_end."""
        parser = SseParser()
        url = f"/v1/turns/{turn_id}/events"
        try:
            async with self.client.stream("GET", url, params={"after": after}) as response:
                response.raise_for_status()
                async for chunk in response.aiter_raw():
                    batch = [
                        (RunnerEvent.model_validate_json(e.data), e.data)
                        for e in parser.feed(chunk)
                    ]
                    if batch:
                        yield batch
                        if batch[-1][0].type == "turn_end":
                            return
        except httpx.HTTPError as error:
            raise RunnerGoneError(f"events of turn {turn_id}: {error!r}") from error
        raise RunnerGoneError(f"the event stream of turn {turn_id} ended before turn_end")


class RunnerPool:
    """One RunnerClient per runner URL, kept for reuse and closed together."""

    def __init__(self) -> None:
        self._clients: dict[str, RunnerClient] = {}

    def get(self, base_url: str) -> RunnerClient:
        """The client for `base_url`."""
        client = self._clients.get(base_url)
        if client is None:
            client = self._clients[base_url] = RunnerClient.connect(base_url)
        return client

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
