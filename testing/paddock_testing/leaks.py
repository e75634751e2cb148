"""Collecting what an in-process operator leaves behind when its event loop stops.

kopf's API client (aiohttp, TLS done by asyncio in memory over a plain socket) can leave a socket
connected to the API server unclosed when KopfRunner stops the operator's loop mid-request. The
garbage collector then closes it with a ResourceWarning, which pytest reports as an unraisable
exception in whichever later test the collection happens to run (CI failed on that twice). The
fixture that stops the operator collects right away instead, and lets through every unraisable
exception except that one: a socket still connected to the test API server's port.
"""

from __future__ import annotations

import gc
import re
import sys
from typing import Any

_PEER = re.compile(r"raddr=\('127\.0\.0\.1', (\d+)\)")


def collect_dropping_connections_to(port: int) -> list[str]:
    """Collect garbage now; a socket connected to 127.0.0.1:port that is closed by the collector
    is dropped quietly (returned, for a test to look at); anything else goes to pytest as ever."""
    dropped: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        described = repr(unraisable.object)
        peer = _PEER.search(described)
        if (
            isinstance(unraisable.exc_value, ResourceWarning)
            and described.startswith("<socket.socket")
            and peer is not None
            and int(peer[1]) == port
        ):
            dropped.append(described)
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return dropped
