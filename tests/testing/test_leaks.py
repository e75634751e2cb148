"""paddock_testing.leaks: only a socket to the named port is dropped quietly."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest

from paddock_testing.leaks import collect_dropping_connections_to

pytestmark = pytest.mark.unit


def _leak_a_connection(server: socket.socket) -> int:
    """A client connected to server, left unclosed in a reference cycle; the server's port."""
    client = socket.create_connection(server.getsockname())
    cycle: list[Any] = [client]
    cycle.append(cycle)
    port: int = server.getsockname()[1]
    return port


def test_a_socket_to_the_api_server_is_dropped_and_any_other_is_reported() -> None:
    reported: list[str] = []
    with (
        socket.create_server(("127.0.0.1", 0)) as api,
        socket.create_server(("127.0.0.1", 0)) as other,
    ):
        api_port, other_port = _leak_a_connection(api), _leak_a_connection(other)
        before = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: reported.append(repr(unraisable.object))
        try:
            dropped = collect_dropping_connections_to(api_port)
        finally:
            sys.unraisablehook = before
    assert [f"raddr=('127.0.0.1', {api_port})" in d for d in dropped] == [True]
    assert [f"raddr=('127.0.0.1', {other_port})" in r for r in reported] == [True]
