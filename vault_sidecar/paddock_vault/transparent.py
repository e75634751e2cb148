"""Transparent mode: connections iptables redirected here, with their original destination.

The original address only tells the port (and that a redirect happened): the host comes from the
SNI or the Host header and is resolved by the vault itself, so an agent cannot pick the IP address
an allowed name is relayed to.
"""

from __future__ import annotations

import socket
import struct

from paddock_vault import intercept
from paddock_vault.conn import StreamConn
from paddock_vault.context import Context
from paddock_vault.errors import PolicyError

MODE = "transparent"
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same value


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """The (address, port) the client connected to before iptables redirected it."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack_from("!H", raw, 2)[0]
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack_from("!H", raw, 2)[0]


async def handle(ctx: Context, raw: StreamConn) -> None:
    """Serve one redirected connection."""
    sock: socket.socket = raw.writer.get_extra_info("socket")
    try:
        address, port = original_destination(sock)
    except OSError:
        raise PolicyError("not a redirected connection", reason="loop") from None
    if (address, port) == tuple(sock.getsockname()[:2]):
        raise PolicyError("a connection straight to the transparent port", reason="loop")
    ctx.check_port(port)
    await intercept.serve(ctx, raw, mode=MODE, host=None, port=port, address=address)
