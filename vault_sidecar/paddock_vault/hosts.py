"""Host names as the vault compares them: one normal form, then exact or `*.` pattern matching.

The normal form is lower-case ASCII (IDNA A-labels, so punycode and Unicode spellings agree), with
no trailing dot. A name whose last label is a number is an IPv4 address, read the way WHATWG URL
parsing (and the system resolver's inet_aton) reads it: `0x7f.1`, `017700000001` and `2130706433`
are all 127.0.0.1, so they are IP literals (never allowed, never decrypted), not names.

Patterns follow the Agent API: `api.github.com` matches only itself and `*.github.com` matches any
name under github.com (not github.com itself), like the CRD's CEL rule.
"""

from __future__ import annotations

import ipaddress
import re

import idna

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_ASCII_HOST = re.compile(r"[A-Za-z0-9.-]+\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


class HostError(ValueError):
    """Not a host name or authority the vault accepts."""


def normalize(host: str) -> str:
    """The host's normal form; raises HostError when it is not a valid DNS name or IP literal."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        raise HostError(f"invalid host name {host!r}")
    if not _ASCII_HOST.match(name):
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise HostError(f"invalid host name {host!r}: {error}") from None
    name = name.lower()
    if _ends_in_number(name):
        return _ipv4(name, host)
    if not all(_LABEL.match(label) for label in name.split(".")):
        raise HostError(f"invalid host name {host!r}")
    return name


def _ipv4_number(part: str) -> int | None:
    """WHATWG's IPv4 number parser: decimal, 0x hex or 0 octal; None on failure."""
    if not part:
        return None
    radix = 10
    if len(part) >= 2 and part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) >= 2 and part[0] == "0":
        part, radix = part[1:], 8
    if not part:
        return 0
    digits = "0123456789abcdef"[:radix]
    if any(c not in digits for c in part.lower()):
        return None
    return int(part, radix)


def _ends_in_number(name: str) -> bool:
    """WHATWG's "ends in a number" checker (name already without its trailing dot)."""
    last = name.rsplit(".", 1)[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or _ipv4_number(last) is not None)


def _ipv4(name: str, host: str) -> str:
    """WHATWG's IPv4 parser, for a name that ends in a number; HostError when it fails."""
    numbers = [_ipv4_number(part) for part in name.split(".")]
    if len(numbers) > 4 or None in numbers:
        raise HostError(f"invalid host name {host!r}: it ends in a number but is no IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise HostError(f"invalid IPv4 address {host!r}: a part is out of range")
    address = values[-1]
    for i, n in enumerate(values[:-1]):
        address += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(address))


def is_ip(host: str) -> bool:
    """Whether a normalised host is an IP literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def split_authority(authority: str, default_port: int | None = None) -> tuple[str, int]:
    """(normalised host, port) from `host[:port]` or `[v6]:port`; raises HostError."""
    if "@" in authority or any(c.isspace() for c in authority):
        raise HostError(f"invalid authority {authority!r}")
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise HostError(f"invalid authority {authority!r}")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise HostError(f"invalid authority {authority!r}")
            port_text = rest[1:]
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    elif ":" in authority:
        raise HostError(f"invalid authority {authority!r} (IPv6 needs brackets)")
    if port_text or authority.endswith(":"):
        if not _PORT.match(port_text) or not 0 < int(port_text) < 65536:
            raise HostError(f"invalid port in {authority!r}")
        port = int(port_text)
    elif default_port is None:
        raise HostError(f"{authority!r} has no port")
    else:
        port = default_port
    return normalize(host), port


def matches(pattern: str, host: str) -> bool:
    """Whether a normalised host matches an exact or `*.domain` pattern."""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def matches_any(patterns: tuple[str, ...], host: str) -> bool:
    """Whether a normalised host matches any of the patterns."""
    return any(matches(pattern, host) for pattern in patterns)
