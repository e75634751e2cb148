"""Private networks a cluster admin may open to the sandboxes, and the addresses nothing opens.

The vault refuses private addresses, and each sandbox's NetworkPolicy blocks them. A cluster may
have internal services its agents should reach with their credentials (a GitHub Enterprise, an
API behind a Service): the operator's `internal_networks` setting names them, and both the vault
and the NetworkPolicy open exactly those. Loopback (the Pod itself), link-local and the cloud
metadata addresses, multicast, unspecified and IPv6 forms that embed an IPv4 address are never
opened, whatever the setting says.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
"""Cloud instance metadata services: they hand out the node's own credentials."""

_NEVER = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("::/127", "unspecified and loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("2002::/16", "6to4"),
        ("2001::/32", "Teredo"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
)


def internal_network_problem(net: IPNetwork) -> str | None:
    """Why net may not be opened to sandboxes, or None when it may."""
    for never, why in _NEVER:
        if net.version == never.version and net.overlaps(never):
            return f"{net} overlaps {never} ({why} addresses)"
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
