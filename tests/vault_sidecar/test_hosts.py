"""Host matching: one normal form, exact and wildcard patterns, no look-alikes."""

from __future__ import annotations

import pytest

from paddock_vault.hosts import HostError, matches, normalize, split_authority

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("host", "pattern"),
    [
        ("API.GitHub.com", "api.github.com"),  # case
        ("api.github.com.", "api.github.com"),  # trailing dot
        ("bücher.example", "xn--bcher-kva.example"),  # Unicode spelling of a punycode pattern
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("raw.githubusercontent.com", "*.githubusercontent.com"),
        ("a.b.githubusercontent.com.", "*.githubusercontent.com"),
    ],
)
def test_matches(host: str, pattern: str) -> None:
    assert matches(pattern, normalize(host))


@pytest.mark.parametrize(
    ("host", "pattern"),
    [
        ("api.github.com.evil.com", "api.github.com"),
        ("evilgithub.com", "github.com"),
        ("evilgithub.com", "*.github.com"),
        ("github.com", "*.github.com"),  # a wildcard needs a label in front
        ("\u0430pi.github.com", "api.github.com"),  # Cyrillic a: another name once IDNA-encoded
        ("api-github.com", "api.github.com"),
        ("xapi.github.com", "api.github.com"),
    ],
)
def test_does_not_match(host: str, pattern: str) -> None:
    assert not matches(pattern, normalize(host))


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("api.github.com:443", ("api.github.com", 443)),
        ("API.github.com.:8443", ("api.github.com", 8443)),
        ("[::1]:443", ("::1", 443)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
    ],
)
def test_split_authority(authority: str, expected: tuple[str, int]) -> None:
    assert split_authority(authority) == expected


@pytest.mark.parametrize(
    "authority",
    ["api.github.com", "a:0", "a:65536", "a:+1", "user@a:443", "a b:443", "::1:443", ":443",
     "a..b:443", "-a.com:443", "a_b.com:443", "[::1:443"],
)  # fmt: skip
def test_split_authority_refuses(authority: str) -> None:
    with pytest.raises(HostError):
        split_authority(authority)


def test_port_is_not_part_of_the_name() -> None:
    host, port = split_authority("api.github.com:444")
    assert matches("api.github.com", host)
    assert port == 444


# Numeric hosts as WHATWG URL parsing reads them (cases from its urltestdata.json), which is how
# the system resolver (inet_aton) reads them too: each is an IP literal, never a DNS name.
@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("999999999", "59.154.201.255"),
        ("2130706433", "127.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0xc0.0250.01", "192.168.0.1"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("0x.0x.0", "0.0.0.0"),  # noqa: S104
        ("0", "0.0.0.0"),  # noqa: S104
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),  # full-width digits
    ],
)
def test_numeric_hosts_are_ipv4_addresses(host: str, address: str) -> None:
    assert normalize(host) == address
    assert split_authority(f"{host}:443") == (address, 443)


@pytest.mark.parametrize(
    "host",
    ["4294967296", "0xffffffff1", "10000000000", "256.256.256.256", "192.168.0.257",
     "1.2.3.4.5", "foo.1.2.3.4", "0x100.0", "1.0x1000000", "09", "1.2.3.08", "foo.09",
     "foo.0x4", "a.b.1", "1..2", "0999999999999999999"],
)  # fmt: skip
def test_numeric_hosts_that_are_no_ipv4_address_are_refused(host: str) -> None:
    with pytest.raises(HostError):
        normalize(host)


@pytest.mark.parametrize("host", ["0x7f.example", "1.example", "example.0a", "a0x1.com"])
def test_names_with_digits_stay_names(host: str) -> None:
    assert normalize(host) == host
