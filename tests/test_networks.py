"""One table of blocked address ranges: the vault, the NetworkPolicy and the settings all read it.

Before the table, each of the three kept its own list (and they differed, e.g. `::/127` against
`::/96`). The lists below are what each blocked then, copied from the code of that time; every
consumer must still block every one of them (the union), with two named exceptions: the
NetworkPolicy cannot hold IPv4-mapped IPv6 (Kubernetes reads `::ffff:0:0/96` as `0.0.0.0/0`), and
`internal_networks` exist to open private ranges, so they are refused only what was never openable.
"""

from __future__ import annotations

import ipaddress

import pytest

from paddock.networks import BLOCKED, internal_network_problem
from paddock_operator.render import objects
from paddock_vault.netguard import refusal

pytestmark = pytest.mark.unit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# paddock/networks.py's _NEVER: what no internal network could overlap.
OLD_NEVER = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
             "::/127", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16",
             "2001::/32", "fe80::/10", "ff00::/8"]  # fmt: skip
# The operator's NetworkPolicy except lists.
OLD_POLICY = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
              "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
              "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96"]  # fmt: skip
# The vault's netguard: its own IPv4-embedding list and CGNAT, then Python's ipaddress flags
# (loopback, unspecified, link-local, multicast, private, reserved, not global) -- whose
# networks are listed here as ipaddress 3.11 defines them.
OLD_NETGUARD = ["::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48",
                "2002::/16", "2001::/32", "100.64.0.0/10",
                "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                "192.0.0.0/29", "192.0.0.170/31", "192.0.2.0/24", "192.168.0.0/16",
                "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
                "240.0.0.0/4", "255.255.255.255/32",
                "::1/128", "::/128", "100::/64", "2001::/23", "2001:db8::/32", "2001:10::/28",
                "fc00::/7", "fe80::/10", "ff00::/8",
                "::/8", "100::/8", "200::/7", "400::/6", "800::/5", "1000::/4", "4000::/3",
                "6000::/3", "8000::/3", "a000::/3", "c000::/3", "e000::/4", "f000::/5",
                "f800::/6", "fe00::/9"]  # fmt: skip
OLD = sorted({*OLD_NEVER, *OLD_POLICY, *OLD_NETGUARD}, key=lambda n: (":" in n, n))
# What internal_networks existed to open: private and special-purpose ranges (the shared and
# unique-local ones only in parts: as a whole they hold a metadata address).
OPENABLE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/16", "fd12:3456::/48",
            "192.0.0.0/29", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24",
            "203.0.113.0/24", "240.0.0.0/8", "100::/64", "2001:db8::/32", "2001:10::/28",
            "4000::/3"]  # fmt: skip


def _samples(net: IPNetwork) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The first, a middle and the last address of net."""
    return [net[0], net[net.num_addresses // 2], net[-1]]


def _policy_blocks(net: IPNetwork) -> bool:
    policy = objects.network_policy_excepts()
    return any(
        net.version == blocked.version and net.subnet_of(blocked)  # type: ignore[arg-type]
        for blocked in map(ipaddress.ip_network, policy)
    )


@pytest.mark.parametrize("cidr", OLD)
def test_the_vault_still_refuses_every_range_any_list_blocked(cidr: str) -> None:
    for ip in _samples(ipaddress.ip_network(cidr)):
        assert refusal(ip) is not None, f"{ip} (in {cidr}) is no longer refused by the vault"


@pytest.mark.parametrize("cidr", [c for c in OLD if c != "::ffff:0:0/96"])
def test_the_network_policy_still_blocks_every_range_any_list_blocked(cidr: str) -> None:
    assert _policy_blocks(ipaddress.ip_network(cidr)), f"{cidr} is open in the NetworkPolicy"


def test_the_network_policy_leaves_out_ipv4_mapped_addresses() -> None:
    # Kubernetes parses ::ffff:0:0/96 as 0.0.0.0/0: the except would block all of IPv4.
    assert not any(
        ipaddress.ip_network(c).overlaps(ipaddress.ip_network("::ffff:0:0/96"))
        and ipaddress.ip_network(c).prefixlen >= 96
        for c in objects.network_policy_excepts()
        if ":" in c
    )


# The IPv4-embedding forms the vault refused even where a network was opened to it.
OLD_EMBEDDING = ["::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48",
                 "2002::/16", "2001::/32"]  # fmt: skip


@pytest.mark.parametrize("cidr", sorted({*OLD_NEVER, *OLD_EMBEDDING}))
def test_internal_networks_still_refuse_what_was_never_openable(cidr: str) -> None:
    assert internal_network_problem(ipaddress.ip_network(cidr)) is not None


@pytest.mark.parametrize("cidr", OPENABLE)
def test_internal_networks_may_still_open_private_ranges(cidr: str) -> None:
    assert internal_network_problem(ipaddress.ip_network(cidr)) is None


def test_every_consumer_reads_the_one_table() -> None:
    table = {str(entry.network) for entry in BLOCKED}
    assert set(objects.network_policy_excepts()) == table - {"::ffff:0:0/96"}
    for entry in BLOCKED:
        assert refusal(entry.network[0]) is not None
