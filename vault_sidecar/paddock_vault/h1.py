"""HTTP/1.1 on both sides of the vault, with h11: the agent's end and the upstream end.

`Peer` wraps an h11 connection over a Conn with timeouts; `AgentSide` adds the strict request-head
check that runs on raw bytes before h11 parses them (see framing).
"""

from __future__ import annotations

import asyncio

import h11

from paddock_vault import framing
from paddock_vault.conn import Conn
from paddock_vault.errors import RequestError, UpstreamError, VaultError


class Peer:
    """One h11 connection and the stream under it."""

    error: type[VaultError] = UpstreamError
    timeout_status = 504

    def __init__(
        self, conn: Conn, role: type[h11.CLIENT] | type[h11.SERVER], max_head: int
    ) -> None:
        self.conn = conn
        self.h11 = h11.Connection(role, max_incomplete_event_size=max_head)

    def send(self, event: h11.Event) -> None:
        """Serialise and queue an event."""
        data = self.h11.send(event)
        if data:
            self.conn.send(data)

    async def _fill(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                data = await self.conn.recv()
        except TimeoutError:
            raise self.error(
                "timed out waiting for data", status=self.timeout_status, reason="timeout"
            ) from None
        self.h11.receive_data(data)

    async def next_event(self, seconds: float) -> h11.Event:
        """The next event, reading as needed; error on malformed input or timeout."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                raise self.error(
                    f"malformed HTTP: {error}", status=error.error_status_hint, reason="protocol"
                ) from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            await self._fill(seconds)

    def reusable(self) -> bool:
        """Whether both sides finished the exchange and the connection can carry another."""
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def next_cycle(self) -> None:
        """Get ready for the next request/response on the same connection."""
        self.h11.start_next_cycle()


class AgentSide(Peer):
    """The agent's end: an h11 server that checks each raw request head before parsing it."""

    error = RequestError
    timeout_status = 408

    def __init__(self, conn: Conn, max_head: int) -> None:
        super().__init__(conn, h11.SERVER, max_head)
        self.max_head = max_head
        self.response_started = False

    async def next_request(self, seconds: float) -> h11.Request | None:
        """The next request; None when the agent closed the connection between requests."""
        while True:
            buffered, closed = self.h11.trailing_data
            end = framing.head_end(buffered)
            if end > self.max_head or (end < 0 and len(buffered) > self.max_head):
                raise RequestError("request head too large", status=431, reason="limit")
            if end >= 0:
                framing.check_request_head(buffered[:end])
                break
            if closed:
                if buffered:
                    raise RequestError("connection closed inside a request head")
                return None
            await self._fill(seconds)
        event = await self.next_event(seconds)
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)  # noqa: S101 - h11 yields a Request after a head
        return event

    def send(self, event: h11.Event) -> None:
        """Serialise and queue an event, noting when a response starts."""
        if isinstance(event, h11.Response):
            self.response_started = True
        super().send(event)

    def next_cycle(self) -> None:
        """Get ready for the next request."""
        super().next_cycle()
        self.response_started = False
