"""Private networks a cluster admin may open to the sandboxes, and the addresses nothing opens.

The vault refuses private addresses, and each sandbox's NetworkPolicy blocks them. A cluster may
have internal services its agents should reach with their credentials (a GitHub Enterprise, an
API behind a Service): the operator's `internal_networks` setting names them, and both the vault
and the NetworkPolicy open exactly those. Loopback (the Pod itself), link-local and the cloud
metadata addresses, multicast, unspecified and IPv6 forms that embed an IPv4 address are never
opened, whatever the setting says.

BLOCKED is the one table of closed ranges that the vault, the NetworkPolicy renderer and these
settings all read.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
"""Cloud instance metadata services: they hand out the node's own credentials."""


class Blocked(enum.Enum):
    """How firmly a range is closed."""

    PRIVATE = "private"
    """Closed, but a cluster admin may open it to every sandbox (`internal_networks`)."""
    NEVER = "never"
    """Never opened to sandboxes (tests may still open loopback to the vault on purpose)."""
    EMBEDS_V4 = "embeds_v4"
    """IPv6 forms that carry an IPv4 address: refused outright rather than decoded."""


@dataclass(frozen=True)
class BlockedRange:
    """One range of the table: the network, why it is closed, how firmly."""

    network: IPNetwork
    why: str
    kind: Blocked


def _table(*rows: tuple[str, str, Blocked]) -> tuple[BlockedRange, ...]:
    return tuple(BlockedRange(ipaddress.ip_network(net), why, kind) for net, why, kind in rows)


_P, _N, _E = Blocked.PRIVATE, Blocked.NEVER, Blocked.EMBEDS_V4
BLOCKED: tuple[BlockedRange, ...] = _table(
    # IPv4 (IANA special-purpose registry): everything that is not global unicast.
    ("0.0.0.0/8", "unspecified", _N),
    ("10.0.0.0/8", "private", _P),
    ("100.64.0.0/10", "shared (CGNAT)", _P),
    ("127.0.0.0/8", "loopback", _N),
    ("169.254.0.0/16", "link-local", _N),
    ("172.16.0.0/12", "private", _P),
    ("192.0.0.0/24", "IETF protocol assignment", _P),
    ("192.0.2.0/24", "documentation", _P),
    ("192.168.0.0/16", "private", _P),
    ("198.18.0.0/15", "benchmarking", _P),
    ("198.51.100.0/24", "documentation", _P),
    ("203.0.113.0/24", "documentation", _P),
    ("224.0.0.0/4", "multicast", _N),
    ("255.255.255.255/32", "broadcast", _N),
    ("240.0.0.0/4", "reserved", _P),
    # IPv6: the specific ranges first (the first match names the reason), then everything
    # outside 2000::/3, the only global unicast space.
    ("::/128", "unspecified", _N),
    ("::1/128", "loopback", _N),
    ("::ffff:0:0/96", "IPv4-mapped", _E),
    ("::ffff:0:0:0/96", "IPv4-translated", _E),
    ("::/96", "IPv4-compatible", _E),
    ("64:ff9b::/96", "NAT64", _E),
    ("64:ff9b:1::/48", "NAT64", _E),
    ("2002::/16", "6to4", _E),
    ("2001::/32", "Teredo", _E),
    ("100::/64", "discard-only", _P),
    ("2001::/23", "IETF protocol assignment", _P),
    ("2001:db8::/32", "documentation", _P),
    ("fc00::/7", "unique local (private)", _P),
    ("fe80::/10", "link-local", _N),
    ("fec0::/10", "site-local", _P),
    ("ff00::/8", "multicast", _N),
    ("::/3", "reserved", _P),
    ("4000::/2", "reserved", _P),
    ("8000::/2", "reserved", _P),
    ("c000::/3", "reserved", _P),
    ("e000::/4", "reserved", _P),
    ("f000::/5", "reserved", _P),
    ("f800::/6", "reserved", _P),
    ("fe00::/9", "reserved", _P),
)
"""The addresses sandboxes may not reach: the vault refuses them (`netguard`), each sandbox's
NetworkPolicy blocks them, and `internal_networks` may open only the PRIVATE ones."""


def blocked_range(ip: IPAddress) -> BlockedRange | None:
    """The first range of BLOCKED that holds ip, or None for a global unicast address."""
    return next((r for r in BLOCKED if r.network.version == ip.version and ip in r.network), None)


def internal_network_problem(net: IPNetwork) -> str | None:
    """Why net may not be opened to sandboxes, or None when it may."""
    for blocked in BLOCKED:
        never = blocked.network
        if (
            blocked.kind is not Blocked.PRIVATE
            and net.version == never.version
            and net.overlaps(never)
        ):
            return f"{net} overlaps {never} ({blocked.why} addresses)"
    metadata = sorted(str(ip) for ip in METADATA_ADDRESSES if ip in net)
    if metadata:
        return f"{net} contains the cloud metadata address {metadata[0]}"
    return None


def _checked(nets: list[IPNetwork]) -> list[IPNetwork]:
    problems = [p for p in map(internal_network_problem, nets) if p]
    if problems:
        raise ValueError("; ".join(problems))
    return nets


InternalNetworks = Annotated[list[IPNetwork], AfterValidator(_checked)]
"""A settings field: private networks to open, each refused when internal_network_problem says."""
