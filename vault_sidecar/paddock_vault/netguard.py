"""Which IP addresses the vault may connect to, and name resolution that checks every answer.

Only globally routable unicast addresses pass. IPv6 forms that embed an IPv4 address (mapped,
compatible, NAT64, 6to4, Teredo) are refused outright rather than decoded, and cloud metadata
addresses are refused even when a test widens the allow list. The caller connects to exactly the
addresses `resolve()` returned, so there is no window for DNS rebinding between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from paddock.networks import METADATA_ADDRESSES
from paddock_vault.errors import PolicyError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""(host, port) -> the addresses it resolves to, in the order to try them."""

_EMBEDDING_V4 = tuple(
    (ipaddress.IPv6Network(net), form)
    for net, form in (
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("2002::/16", "6to4"),
        ("2001::/32", "Teredo"),
    )
)
_SHARED_V4 = ipaddress.IPv4Network("100.64.0.0/10")


def refusal(ip: IPAddress, allow: Iterable[IPNetwork] = ()) -> str | None:
    """Why the vault must not connect to ip, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address) and not (ip.is_loopback or ip.is_unspecified):
        for net, form in _EMBEDDING_V4:
            if ip in net:
                return f"{form} IPv6 address"
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if any(ip in net for net in allow if net.version == ip.version):
        return None
    checks = (
        (ip.is_loopback, "loopback address"),
        (ip.is_unspecified, "unspecified address"),
        (ip.is_link_local, "link-local address"),
        (ip.is_multicast, "multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_V4, "shared (CGNAT) address"),
        (ip.is_private, "private address"),
        (ip.is_reserved, "reserved address"),
        (not ip.is_global, "non-global address"),
    )
    return next((why for failed, why in checks if failed), None)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses getaddrinfo gives for host, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), None)
    return list(seen)


@dataclass(frozen=True)
class NetGuard:
    """Resolves destinations and refuses unsafe addresses but those in `allow` (never metadata)."""

    resolver: Resolver = system_resolver
    allow: tuple[IPNetwork, ...] = ()
    local_ports: frozenset[int] = frozenset()
    """The vault's own listening ports: a loopback address on one of them is a loop."""

    def check(self, ip: IPAddress, port: int) -> None:
        """Raise PolicyError unless the vault may connect to ip:port."""
        why = refusal(ip, self.allow)
        if why is None and port in self.local_ports and (ip.is_loopback or ip.is_unspecified):
            why = "a loop back into the vault"
        if why is not None:
            raise PolicyError(f"destination {ip} is refused: {why}", reason="unsafe_address")

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for host; PolicyError when any answer is unsafe."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError as error:
                raise PolicyError(
                    f"cannot resolve {host}: {error}", status=502, reason="dns"
                ) from None
        else:
            addresses = [literal]
        if not addresses:
            raise PolicyError(f"{host} resolves to no address", status=502, reason="dns")
        for ip in addresses:
            self.check(ip, port)
        return addresses
