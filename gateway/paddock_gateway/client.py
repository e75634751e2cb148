"""A client of the gateway's API whose event stream reconnects by itself with its cursor."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from paddock.sse import SseParser


class ClientError(Exception):
    """The gateway refused a request (4xx): retrying the same will not help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Event:
    """A session event: its cursor, type and payload."""

    id: str | None
    type: str
    data: dict[str, Any]


class GatewayClient:
    """Talks to one Agent's sessions through any of several gateway URLs (replicas)."""

    def __init__(
        self, urls: Sequence[str], token: str, namespace: str, agent: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        if not urls:
            raise ValueError("at least one gateway URL is needed")
        self.urls = list(urls)
        self.namespace = namespace
        self.agent = agent
        self._turn = 0
        self.http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, read=None),
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    def _url(self, path: str = "") -> str:
        base = self.urls[self._turn % len(self.urls)].rstrip("/")
        return f"{base}/v1/namespaces/{self.namespace}/agents/{self.agent}/sessions{path}"

    async def _call(self, method: str, path: str = "", body: Any = None) -> Any:
        for attempt in range(len(self.urls) * 3):
            try:
                response = await self.http.request(method, self._url(path), json=body)
            except httpx.TransportError:
                self._turn += 1
                await asyncio.sleep(min(0.1 * attempt, 1.0))
                continue
            if response.status_code >= 500:
                self._turn += 1
                await asyncio.sleep(min(0.1 * attempt, 1.0))
                continue
            if response.status_code >= 400:
                raise ClientError(response.status_code, response.json().get("detail", ""))
            return response.json() if response.content else None
        raise ClientError(503, "no gateway answered")

    async def create_session(self, model: str | None = None) -> dict[str, Any]:
        """Open a session."""
        result: dict[str, Any] = await self._call("POST", "", {"model": model} if model else {})
        return result

    async def get_session(self, session_id: str) -> dict[str, Any]:
        """A session's metadata."""
        result: dict[str, Any] = await self._call("GET", f"/{session_id}")
        return result

    async def send(self, session_id: str, content: str, message_id: str | None = None) -> str:
        """Post a message (retried safely: the id makes it idempotent); the turn it starts."""
        message_id = message_id or uuid.uuid4().hex
        accepted = await self._call(
            "POST", f"/{session_id}/messages", {"id": message_id, "content": content}
        )
        return str(accepted["turn_id"])

    async def events(
        self, session_id: str, after: str | None = None, retry_delay: float = 0.2
    ) -> AsyncGenerator[Event, None]:
        """Every event after `after`, live, across disconnects and replicas, until `end`."""
        cursor = after
        while True:
            try:
                async for event in self._stream_once(session_id, cursor):
                    if event.id is not None:
                        cursor = event.id
                    yield event
                    if event.type == "end":
                        return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            self._turn += 1
            await asyncio.sleep(retry_delay)

    async def _stream_once(self, session_id: str, cursor: str | None) -> AsyncIterator[Event]:
        headers = {"Last-Event-ID": cursor} if cursor else {}
        url = self._url(f"/{session_id}/events")
        async with self.http.stream("GET", url, headers=headers) as response:
            if 400 <= response.status_code < 500:
                body = json.loads(await response.aread() or b"{}")
                raise ClientError(response.status_code, body.get("detail", ""))
            if response.status_code >= 500:
                return
            parser = SseParser()
            async for chunk in response.aiter_raw():
                for sse in parser.feed(chunk):
                    payload = json.loads(sse.data)
                    yield Event(sse.id, sse.event, payload)
