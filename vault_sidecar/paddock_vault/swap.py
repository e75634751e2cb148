"""Stubs become real values on the way out, only towards a credential's own hosts.

`rewrite_request` returns the headers and target to send upstream, or raises PolicyError when a stub
or a real value is headed somewhere it does not belong: any host not in the credential's list, or
any connection that is not TLS verified by the vault. Stubs are looked for in raw header values,
inside `Basic` credentials (decoded, swapped, re-encoded) and, percent-decoded, in the target.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from paddock_vault.config import Credential, Policy
from paddock_vault.errors import PolicyError

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
    }
)


@dataclass(frozen=True)
class Outgoing:
    """What to send upstream, and which credentials were put in it."""

    target: bytes
    headers: Headers
    swapped: tuple[str, ...]


def _basic(value: bytes) -> bytes | None:
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _forms(value: bytes) -> list[bytes]:
    forms = [value]
    decoded = _basic(value)
    if decoded is not None:
        forms.append(decoded)
    if b"%" in value:
        forms.append(urllib.parse.unquote_to_bytes(value))
    return forms


def _leak(forms: Sequence[bytes], foreign: Sequence[Credential]) -> Credential | None:
    for credential in foreign:
        if any(credential.stub in f or credential.real in f for f in forms):
            return credential
    return None


def _swap(value: bytes, bound: Sequence[Credential]) -> tuple[bytes, list[str]]:
    used = [c.name for c in bound if c.stub in value]
    for credential in bound:
        value = value.replace(credential.stub, credential.real)
    decoded = _basic(value)
    if decoded is not None:
        inner = [c.name for c in bound if c.stub in decoded]
        if inner:
            for credential in bound:
                decoded = decoded.replace(credential.stub, credential.real)
            value = b"Basic " + base64.b64encode(decoded)
            used += inner
    return value, used


def _blocked(credential: Credential, host: str, secure: bool) -> PolicyError:
    where = "over a connection the vault cannot verify" if not secure else f"to {host}"
    return PolicyError(
        f"credential {credential.name} may not be sent {where}; it is bound to "
        + ", ".join(credential.hosts),
        reason="credential_blocked",
    )


def _swap_query(target: bytes, bound: Sequence[Credential]) -> tuple[bytes, list[str]]:
    path, sep, query = target.partition(b"?")
    used = [c.name for c in bound if c.swap_in_query and c.stub in query]
    for credential in bound:
        if credential.swap_in_query:
            query = query.replace(credential.stub, credential.real)
    return path + sep + query, used


def rewrite_request(
    policy: Policy, host: str, *, secure: bool, target: bytes, headers: Headers
) -> Outgoing:
    """The request to send to host, stubs swapped; PolicyError if a credential must not go there."""
    bound = [c for c in policy.credentials if secure and c.binds(host)]
    foreign = [c for c in policy.credentials if c not in bound]
    leaked = _leak(_forms(target), foreign)
    if leaked is not None:
        raise _blocked(leaked, host, secure)
    target, swapped = _swap_query(target, bound)
    connection_tokens = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    out: Headers = []
    for name, value in headers:
        leaked = _leak([name, *_forms(value)], foreign)
        if leaked is not None:
            raise _blocked(leaked, host, secure)
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in connection_tokens:
            continue
        swapped_value, used = _swap(value, bound)
        swapped += used
        out.append((name, swapped_value))
    for credential in bound:
        if credential.injection is not None:
            header = credential.injection.header.encode("ascii")
            value = credential.injection.format.encode().replace(b"{value}", credential.real)
            out = [(n, v) for n, v in out if n.lower() != header.lower()]
            out.append((header, value))
            swapped.append(credential.name)
    return Outgoing(target, out, tuple(dict.fromkeys(swapped)))


def scrub_headers(policy: Policy, headers: Headers) -> Headers:
    """Response headers with every real value replaced by its stub."""
    out = []
    for name, value in headers:
        clean = value
        for credential in policy.credentials:
            if credential.real in clean:
                clean = clean.replace(credential.real, credential.stub)
        out.append((name, clean))
    return out


def body_guard(policy: Policy, host: str, *, secure: bool) -> dict[bytes, bytes | None]:
    """Needles a request body to host must not contain (stubs and values of other credentials)."""
    foreign = [c for c in policy.credentials if not (secure and c.binds(host))]
    return {needle: None for c in foreign for needle in (c.stub, c.real)}


def body_scrub(policy: Policy) -> dict[bytes, bytes | None]:
    """Real values in a response body, each masked with as many `*` (the length stays)."""
    return {c.real: b"*" * len(c.real) for c in policy.credentials}
