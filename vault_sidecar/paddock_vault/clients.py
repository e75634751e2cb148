"""Connection budgets: one for the agent-facing listeners, a share of it per client, and the admin
port's own, so that no number of agent connections can starve the kubelet's probe.

A client is the user that owns the connecting socket, where the kernel can tell (sock_diag, for
connections made from this host's network namespace). In a Pod every agent connection comes from
the Pod itself (loopback in explicit mode, the Pod's IP when redirected), so the source address
cannot tell the harness from the model server's downloads, but the socket's owner can. Where the
owner cannot be learned (a peer on another host, no sock_diag), the source address is the client.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_REQUEST = struct.Struct("=IHHII BBBBI HH16s16sI II")  # nlmsghdr + inet_diag_req_v2
_UID_OFFSET = 16 + 4 + 48 + 12  # nlmsghdr, inet_diag_msg up to idiag_uid
_NO_COOKIE = 0xFFFFFFFF


def _packed(family: int, address: str) -> bytes:
    return socket.inet_pton(family, address).ljust(16, b"\0")


def socket_owner(family: int, local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid owning the TCP socket bound to local and connected to remote, in this network
    namespace; None when the kernel does not say (no such socket, no sock_diag)."""
    request = _REQUEST.pack(
        _REQUEST.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0,
        family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF,
        socket.htons(local[1]), socket.htons(remote[1]),
        _packed(family, local[0]), _packed(family, remote[0]), 0,
        _NO_COOKIE, _NO_COOKIE,
    )  # fmt: skip
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            diag.setblocking(False)  # the kernel answers while handling the send
            diag.send(request)
            reply = diag.recv(8192)
    except OSError:
        return None
    if len(reply) < _UID_OFFSET + 4 or struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR:
        return None
    uid: int = struct.unpack_from("=I", reply, _UID_OFFSET)[0]
    return uid


def client_of(sock: socket.socket, connected_to: tuple[str, int]) -> str:
    """Who opened sock (accepted by the vault): `uid N`, or else `address A`.

    connected_to is where the client's own socket points: the vault's address, or for a
    redirected connection its original destination.
    """
    peer = sock.getpeername()
    owner = socket_owner(sock.family, (peer[0], peer[1]), connected_to)
    return f"uid {owner}" if owner is not None else f"address {peer[0]}"


@dataclass
class Budget:
    """How many connections a listener (or listeners) may hold: in all, and per client."""

    limit: int
    per_client: int | None = None
    open: int = 0
    _by_client: Counter[str] = field(default_factory=Counter)

    def admit(self, client: str | None) -> str | None:
        """Take a slot for client; why not (a refusal to name), or None when taken."""
        if self.open >= self.limit:
            return f"the vault holds its limit of {self.limit} connections"
        if client is not None and self.per_client is not None:
            if self._by_client[client] >= self.per_client:
                return f"{client} holds its limit of {self.per_client} connections"
            self._by_client[client] += 1
        self.open += 1
        return None

    def release(self, client: str | None) -> None:
        """Give back the slot admit took for client."""
        self.open -= 1
        if client is not None and self.per_client is not None:
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]
