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
