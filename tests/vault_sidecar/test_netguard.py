"""The network guard: only global unicast addresses, checked on what is actually connected to."""

from __future__ import annotations

import ipaddress

import pytest

from paddock_vault.errors import PolicyError
from paddock_vault.netguard import NetGuard, refusal

pytestmark = pytest.mark.unit

REFUSED = [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:8.8.8.8",  # mapped forms are refused whatever they embed
    "::127.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "2001:db8::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "140.82.112.6", "2606:4700::6810:84e5"])
def test_global_unicast_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_test_override_never_reaches_metadata_or_mapped_forms() -> None:
    allow = (ipaddress.ip_network("127.0.0.0/16"), ipaddress.ip_network("169.254.0.0/16"))
    assert refusal(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert refusal(ipaddress.ip_address("169.254.169.254"), allow) is not None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allow) is not None


@pytest.mark.asyncio
async def test_one_unsafe_answer_refuses_the_name() -> None:
    async def resolver(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]

    with pytest.raises(PolicyError, match="private"):
        await NetGuard(resolver).resolve("rebind.example", 443)


def test_loop_into_the_vault_refused() -> None:
    guard = NetGuard(allow=(ipaddress.ip_network("127.0.0.1/32"),), local_ports=frozenset({15001}))
    guard.check(ipaddress.ip_address("127.0.0.1"), 443)
    with pytest.raises(PolicyError, match="loop"):
        guard.check(ipaddress.ip_address("127.0.0.1"), 15001)


def test_loop_into_the_vault_through_its_own_address_refused(own: ipaddress.IPv4Address) -> None:
    guard = NetGuard(allow=(ipaddress.ip_network(own),), local_ports=frozenset({15001}))
    guard.check(own, 443)
    with pytest.raises(PolicyError, match="loop"):
        guard.check(own, 15001)
