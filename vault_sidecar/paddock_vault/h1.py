"""HTTP/1.1 on both sides of the vault: llhttp (httptools) parses, messages are written as bytes.

Why not h11: measured on these machines, h11 costs ~200 µs per proxied request (four messages
through its state machine), more than the rest of the request path; llhttp parses both messages in
~7 µs and is as strict (no leniency is turned on). `framing.check_request_head` still vets every
raw request head before the parser sees it, and each request gets a fresh parser, so bytes that
follow a request (pipelining, smuggling) are never parsed as a request of their own: the connection
is closed after the answer instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import httptools

from paddock_vault import framing
from paddock_vault.conn import Conn
from paddock_vault.errors import RequestError, UpstreamError, VaultError
from paddock_vault.watchdog import Watchdog


class _End:
    def __repr__(self) -> str:
        return "END"


END: Final = _End()
"""The event after a message's last body bytes."""


@dataclass
class Head:
    """A request line or status line with its header fields (names as sent, values trimmed)."""

    headers: list[tuple[bytes, bytes]]
    method: bytes = b""
    target: bytes = b""
    status: int = 0
    reason: bytes = b""
    version: bytes = b"1.1"
    keep_alive: bool = True
    upgrade: bool = False
    raw: bytes | None = None
    """The head as received (requests only), for scans that need no parsing."""
    _lowered: dict[bytes, list[bytes]] | None = field(default=None, repr=False)

    def values(self, name: bytes) -> list[bytes]:
        """The values of a header, by lower-case name."""
        if self._lowered is None:
            self._lowered = {}
            for n, v in self.headers:
                self._lowered.setdefault(n.lower(), []).append(v)
        return self._lowered.get(name, [])

    @property
    def chunked(self) -> bool:
        """Whether the body is chunked."""
        return any(v.lower() == b"chunked" for v in self.values(b"transfer-encoding"))

    @property
    def length(self) -> int | None:
        """The Content-Length, if any."""
        values = self.values(b"content-length")
        return int(values[0]) if values else None


Event = Head | bytes | _End


class _Messages:
    """httptools callbacks, turned into a queue of events."""

    def __init__(self, parser: type[httptools.HttpRequestParser | httptools.HttpResponseParser]):
        self.parser = parser(self)
        self.events: deque[Event] = deque()
        self.head: Head | None = None
        self.begun = self.completed = 0
        self.in_body = False
        self.upgrade_rest: bytes | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._url = b""
        self._reason = b""

    def on_message_begin(self) -> None:
        self.begun += 1
        self._headers, self._url, self._reason = [], b"", b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_body:  # trailers are dropped
            self._headers.append((name, value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        head = Head(self._headers, version=parser.get_http_version().encode())
        if isinstance(parser, httptools.HttpRequestParser):
            head.method, head.target = parser.get_method(), self._url
        else:
            head.status, head.reason = parser.get_status_code(), self._reason
        head.keep_alive = parser.should_keep_alive()
        head.upgrade = parser.should_upgrade()
        self.head = head
        self.in_body = True
        self.events.append(head)

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.completed += 1
        if self.head is not None:
            self.head.keep_alive = self.parser.should_keep_alive()
        self.in_body = False
        self.events.append(END)

    def feed(self, data: bytes, error: type[VaultError]) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade_rest = data[upgrade.args[0] :]
        except httptools.HttpParserError as failure:
            raise error(f"malformed HTTP: {failure}", reason="protocol") from None


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A serialised HTTP/1.1 request head."""
    return method + b" " + target + b" HTTP/1.1\r\n" + _fields(headers)


def response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A serialised HTTP/1.1 status line and header fields."""
    return b"HTTP/1.1 %d %s\r\n" % (status, reason) + _fields(headers)


def _fields(headers: list[tuple[bytes, bytes]]) -> bytes:
    text = b"".join([n + b": " + v + b"\r\n" for n, v in headers]) + b"\r\n"
    # Every name and value was parsed or checked when loaded; this guards against a mistake
    # letting a CR or LF through, which would split the message.
    lines = len(headers) + 1
    if text.count(b"\n") != lines or text.count(b"\r") != lines:
        raise VaultError("refusing to write a malformed header field", reason="internal")
    return text


def chunk(data: bytes) -> bytes:
    """data as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"


class PeerTimeoutError(TimeoutError):
    """A peer sent nothing within the time allowed."""


class Peer:
    """One side of a connection the vault speaks HTTP/1.1 on."""

    error: type[VaultError] = UpstreamError
    timeout_status = 504

    def __init__(self, conn: Conn, max_head: int) -> None:
        self.conn = conn
        self.max_head = max_head
        self._messages: _Messages | None = None
        self._head_bytes = 0
        self._watchdog: Watchdog | None = None
        self.eof = False

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer."""
        self.conn.send(data)

    async def _recv(self, seconds: float) -> bytes:
        watchdog = self._watchdog
        if watchdog is None:
            watchdog = self._watchdog = Watchdog(self._expired)
        watchdog.arm(seconds)
        try:
            return await self.conn.recv()
        except PeerTimeoutError:
            raise self.error(
                "timed out waiting for data", status=self.timeout_status, reason="timeout"
            ) from None
        finally:
            watchdog.disarm()

    def _expired(self) -> None:
        self.conn.interrupt(PeerTimeoutError())

    def stop(self) -> None:
        """Stop the read timer (the connection is done)."""
        if self._watchdog is not None:
            self._watchdog.stop()

    def _on_eof(self, messages: _Messages) -> None:
        raise self.error("connection closed inside a message", reason="protocol")

    async def next_event(self, seconds: float, before_wait: Conn | None = None) -> Event:
        """The next event of the current message, reading as needed (flushing before_wait)."""
        messages = self._messages
        if messages is None:
            raise self.error("no message is being read", reason="internal")
        while not messages.events:
            if before_wait is not None:
                before_wait.flush()
            data = await self._recv(seconds)
            if not data:
                self.eof = True
                self._on_eof(messages)
                continue
            if messages.head is None:
                self._head_bytes += len(data)
                if self._head_bytes > self.max_head:
                    raise self.error("message head too large", status=431, reason="limit")
            messages.feed(data, self.error)
        return messages.events.popleft()


class AgentSide(Peer):
    """The agent's end: vets each raw request head, then parses it with a fresh parser."""

    error = RequestError
    timeout_status = 408

    def __init__(self, conn: Conn, max_head: int, head_timeout: float) -> None:
        super().__init__(conn, max_head)
        self.head_timeout = head_timeout
        self.response_started = False

    async def next_request(self, seconds: float) -> Head | None:
        """The next request head; None when the agent closed the connection between requests.

        Waits up to seconds for the head to begin; from its first byte the whole head must
        arrive within head_timeout (a deadline, however slowly the bytes trickle in).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        buffered = b""
        while True:
            end = framing.head_end(buffered)
            if end > self.max_head or (end < 0 and len(buffered) > self.max_head):
                raise RequestError("request head too large", status=431, reason="limit")
            if end >= 0:
                framing.check_request_head(buffered[:end])
                break
            data = await self._recv(max(deadline - loop.time(), 0.0))
            if not data:
                if buffered:
                    raise RequestError("connection closed inside a request head")
                return None
            if not buffered:
                deadline = min(deadline, loop.time() + self.head_timeout)
                self.response_started = False  # a new exchange began: it may be answered
            buffered += data
        self._messages = messages = _Messages(httptools.HttpRequestParser)
        messages.feed(buffered, RequestError)
        head = messages.events.popleft()
        if not isinstance(head, Head):
            raise RequestError("malformed request head")
        head.raw = buffered[:end]
        return head

    def leftover(self) -> bytes:
        """Bytes after a CONNECT request's head (the start of the tunnel)."""
        rest = self._messages.upgrade_rest if self._messages else None
        return rest or b""

    def pipelined(self) -> bool:
        """Whether the agent sent more than one request at once (the connection then closes)."""
        return self._messages is not None and self._messages.begun > 1

    def respond(self, data: bytes) -> None:
        """Queue the start of a response."""
        self.response_started = True
        self.send(data)


class UpstreamSide(Peer):
    """The destination's end: one fresh response parser per request."""

    head_only = False

    def expect_response(self, *, head_only: bool) -> None:
        """Get ready to read the response to a request just sent (HEAD: head_only)."""
        self.head_only = head_only
        self._head_bytes = 0
        self._messages = _Messages(httptools.HttpResponseParser)

    def has_event(self) -> bool:
        """Whether the next event is already parsed (next_event returns without reading)."""
        return self._messages is not None and bool(self._messages.events)

    def _on_eof(self, messages: _Messages) -> None:
        head = messages.head
        # A body that is delimited by the end of the connection ends here.
        if head is not None and messages.in_body and not head.chunked and head.length is None:
            messages.in_body = False
            head.keep_alive = False
            messages.events.append(END)
            return
        raise UpstreamError("upstream closed the connection inside a response", reason="protocol")

    async def next_event(self, seconds: float, before_wait: Conn | None = None) -> Event:
        """Like Peer.next_event; a response to HEAD ends after its head."""
        event = await super().next_event(seconds, before_wait)
        messages = self._messages
        if isinstance(event, Head) and event.status >= 200 and self.head_only and messages:
            messages.events.clear()
            messages.events.append(END)
            messages.in_body = False
            event.keep_alive = False
        return event

    def reusable(self) -> bool:
        """Whether the connection can carry another request."""
        messages = self._messages
        if messages is None or messages.head is None or self.eof:
            return False
        return (
            messages.head.keep_alive
            and messages.head.status >= 200
            and messages.begun == messages.completed
            and not messages.events
        )
