"""paddock_testing.leaks: only what is connected on a named port is dropped quietly."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from typing import Any

import pytest

from paddock_testing.leaks import dropping_leftovers, tolerate_leftovers_on

pytestmark = pytest.mark.unit


def _leak_a_connection(server: socket.socket) -> int:
    """A client connected to server, left unclosed in a reference cycle; the server's port."""
    client = socket.create_connection(server.getsockname())
    cycle: list[Any] = [client]
    cycle.append(cycle)
    port: int = server.getsockname()[1]
    return port


def _leak_a_transport(server: socket.socket) -> None:
    """An asyncio transport connected to server, its loop closed without closing it."""
    loop = asyncio.new_event_loop()
    transport, _ = loop.run_until_complete(
        loop.create_connection(asyncio.Protocol, *server.getsockname())
    )
    cycle: list[Any] = [transport]
    cycle.append(cycle)
    loop.close()


def test_leftovers_on_a_named_port_are_dropped_and_any_other_leak_is_reported() -> None:
    reported: list[str] = []
    with (
        socket.create_server(("127.0.0.1", 0)) as api,
        socket.create_server(("127.0.0.1", 0)) as other,
    ):
        api_port, other_port = _leak_a_connection(api), _leak_a_connection(other)
        _leak_a_transport(api)
        before = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: reported.append(repr(unraisable.object))
        try:
            tolerate_leftovers_on(api_port)
            with dropping_leftovers() as dropped:
                gc.collect()
        finally:
            sys.unraisablehook = before
    # The socket, and the transport with its socket (whichever the collector finalizes first).
    assert 2 <= len(dropped) <= 3, dropped
    assert all(str(api_port) in d for d in dropped), dropped
    assert [f"raddr=('127.0.0.1', {other_port})" in r for r in reported] == [True], reported
