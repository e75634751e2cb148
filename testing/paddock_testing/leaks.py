"""What an in-process operator leaves behind when its event loop stops, and only that.

kopf's API client (aiohttp; asyncio does TLS in memory over a plain socket) can leave connections to
the API server open when KopfRunner stops the operator's loop mid-request, and the operator's
metrics server a connection its scraper made. The garbage collector closes them later with a
ResourceWarning (about the socket, or about the transport holding it), which pytest reports as an
unraisable exception in whichever test the collection happens to run: CI failed on that three times.

The operator fixtures name the ports such leftovers are connected on (the test API server's, the
metrics server's); `dropping_leftovers`, around the whole session, drops the ResourceWarning of a
socket or transport whose local or peer port is one of them, and passes everything else to pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

_PORTS: set[int] = set()


def tolerate_leftovers_on(*ports: int) -> None:
    """From now on, a socket or transport the collector closes while it is connected on one of
    these ports is an in-process operator's leftover, not a leak of the code under test."""
    _PORTS.update(ports)


def _ports_of(unraisable: Any) -> set[int]:
    """The local and peer ports of what an unraisable ResourceWarning is about: a socket, or the
    transport whose __del__ raised it (from the addresses it noted when made: by then the
    collector may have closed its socket first)."""
    if isinstance(unraisable.object, socket.socket):
        return _ports(unraisable.object)
    tb: TracebackType | None = unraisable.exc_traceback
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    owner = tb.tb_frame.f_locals.get("self") if tb is not None else None
    if not isinstance(owner, asyncio.BaseTransport):
        return set()
    found = set()
    for key in ("sockname", "peername"):
        with contextlib.suppress(IndexError, TypeError, ValueError):
            found.add(int(owner.get_extra_info(key)[1]))
    return found


def _ports(sock: socket.socket) -> set[int]:
    found = set()
    for name in (sock.getsockname, sock.getpeername):
        # Closed, never connected, or not an IP socket: no port to tell.
        with contextlib.suppress(OSError, IndexError, TypeError, ValueError):
            found.add(int(name()[1]))
    return found


@contextmanager
def dropping_leftovers() -> Iterator[list[str]]:
    """While inside, drop the leftovers `tolerate_leftovers_on` named (listed in what it yields)."""
    dropped: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, ResourceWarning) and _ports_of(unraisable) & _PORTS:
            dropped.append(f"{unraisable.object!r} on ports {sorted(_ports_of(unraisable))}")
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield dropped
    finally:
        sys.unraisablehook = previous
