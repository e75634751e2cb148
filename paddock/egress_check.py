"""The sandbox's own check, in CNI mode, that its egress redirect is in place before it runs.

The init container runs it as an ordinary user (no privilege: it cannot read iptables): it listens
on the vault's transparent port, which the vault has not bound yet, and connects to an address of
TEST-NET-1. Only a redirect brings that connection back to its own listener. Without one (a node
whose CNI chain lacks the plugin, a runtime that did not pass the annotation) it fails, and the Pod
stops here, before the vault and the harness start.
"""

from __future__ import annotations

import socket
from typing import Final

# Nothing of paddock's is imported: the check runs at every sandbox's start, before the vault, and
# pydantic (paddock.sandbox) alone would double its time. The operator passes the port.

PROBE_ADDRESS: Final = ("192.0.2.1", 9)  # TEST-NET-1 (RFC 5737): never a real destination


class NotRedirectedError(Exception):
    """The Pod's outbound TCP does not reach the vault's transparent port."""


def check(*, port: int, timeout: float = 3.0) -> None:
    """Raises NotRedirectedError unless a connection to PROBE_ADDRESS lands on this Pod's `port`."""
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.settimeout(timeout)
        try:
            with socket.create_connection(PROBE_ADDRESS, timeout=timeout):
                accepted, _ = listener.accept()
                accepted.close()
        except OSError as error:
            raise NotRedirectedError(
                f"a connection to {PROBE_ADDRESS[0]}:{PROBE_ADDRESS[1]} did not reach port {port} "
                f"({error}): the node's paddock-egress CNI plugin did not set up this Pod"
            ) from None
