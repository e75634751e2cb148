"""Which IP addresses the vault may connect to, and name resolution that checks every answer.

Only globally routable unicast addresses pass: `paddock.networks.BLOCKED`, the table the
NetworkPolicy reads too, names the rest. IPv6 forms that embed an IPv4 address (mapped, compatible,
translated, NAT64, 6to4, Teredo) are refused outright rather than decoded, and cloud metadata
addresses are refused even when a test widens the allow list. The caller connects to exactly the
addresses `resolve()` returned, so there is no window for DNS rebinding between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from paddock.networks import METADATA_ADDRESSES, Blocked, blocked_range
from paddock_vault.errors import PolicyError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""(host, port) -> the addresses it resolves to, in the order to try them."""


def refusal(ip: IPAddress, allow: Iterable[IPNetwork] = ()) -> str | None:
    """Why the vault must not connect to ip, or None when it may."""
    blocked = blocked_range(ip)
    if blocked is not None and blocked.kind is Blocked.EMBEDS_V4:
        return f"{blocked.why} IPv6 address"
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if any(ip in net for net in allow if net.version == ip.version):
        return None
    return None if blocked is None else f"{blocked.why} address"


def is_own_address(ip: IPAddress) -> bool:
    """Whether ip is an address of this host (loopback, unspecified, or one it may bind to)."""
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            # Only the host's own addresses can be bound (where ip_nonlocal_bind lets any
            # address bind, every one counts as own: a refusal, never a loop let through).
            probe.bind((str(ip), 0))
        except OSError:
            return False
    return True


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
    """The vault's own listening ports: any address of this host on one of them is a loop."""

    def check(self, ip: IPAddress, port: int) -> None:
        """Raise PolicyError unless the vault may connect to ip:port."""
        why = refusal(ip, self.allow)
        if why is None and port in self.local_ports and is_own_address(ip):
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
