"""Stubs become real values on the way out, only towards a credential's own hosts.

`rewrite_request` returns the headers and target to send upstream, or raises PolicyError when a stub
or a real value is headed somewhere it does not belong: any host not in the credential's list, or
any connection that is not TLS verified by the vault. Stubs are looked for in raw header values,
inside `Basic` credentials (decoded, swapped, re-encoded) and, percent-decoded, in the target.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from paddock_vault.config import Credential, Policy
from paddock_vault.errors import PolicyError
from paddock_vault.scrub import Masker, Secrets

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


@dataclass(frozen=True)
class _Plan:
    """What a request to one host may and may not carry, prepared once per policy."""

    host: str
    secure: bool
    bound: tuple[Credential, ...]
    owners: dict[bytes, Credential]
    """Every stub and real value that must not go to the host, and whose it is."""
    forbidden: re.Pattern[bytes] | None
    guard: tuple[bytes, ...]


def _plan(policy: Policy, host: str, secure: bool) -> _Plan:
    def make() -> _Plan:
        bound = policy.bound(host) if secure else ()
        owners = {n: c for c in policy.credentials if c not in bound for n in (c.stub, c.real)}
        pattern = b"|".join(re.escape(n) for n in sorted(owners, key=len, reverse=True))
        forbidden = re.compile(pattern) if owners else None
        return _Plan(host, secure, bound, owners, forbidden, tuple(owners))

    return policy.memo(("plan", host, secure), make)


def _basic(value: bytes) -> bytes | None:
    if value[:6].lower() != b"basic ":
        return None
    try:
        return base64.b64decode(value[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _leak(plan: _Plan, value: bytes) -> Credential | None:
    """The credential whose stub or value is in value (raw, Basic-decoded or percent-decoded)."""
    forbidden = plan.forbidden
    if forbidden is None:
        return None
    found = forbidden.search(value)
    if found is None:
        decoded = _basic(value)
        if decoded is not None:
            found = forbidden.search(decoded)
        if found is None and b"%" in value:
            found = forbidden.search(urllib.parse.unquote_to_bytes(value))
    return plan.owners[found.group()] if found else None


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


def _connection_tokens(headers: Headers) -> set[bytes]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }


def _raw_scan(plan: _Plan, raw: bytes | None) -> tuple[bool, bool]:
    """(whether fields must be looked at one by one, whether any may need a swap).

    With the raw head at hand, one search finds every plain occurrence; only fields that may hide
    a stub in an encoding (Basic, percent) then need a look of their own.
    """
    if raw is None:
        return True, bool(plan.bound)
    if plan.forbidden is not None:
        found = plan.forbidden.search(raw)
        if found is not None:
            raise _blocked_by(plan, found.group())
    encoded = b"%" in raw or b"basic " in raw.lower()
    return encoded, encoded or any(c.stub in raw for c in plan.bound)


def _blocked_by(plan: _Plan, needle: bytes) -> PolicyError:
    return _blocked(plan.owners[needle], plan.host, plan.secure)


def rewrite_request(
    policy: Policy,
    host: str,
    *,
    secure: bool,
    target: bytes,
    headers: Headers,
    raw: bytes | None = None,
) -> Outgoing:
    """The request to send to host, stubs swapped; PolicyError if a credential must not go there.

    raw, the request head as received, lets the common case (nothing to block) skip the field by
    field look.
    """
    plan = _plan(policy, host, secure)
    bound = plan.bound
    look, swap = _raw_scan(plan, raw)
    leaked = _leak(plan, target) if look else None
    if leaked is not None:
        raise _blocked(leaked, host, secure)
    target, swapped = _swap_query(target, bound)
    drop = HOP_BY_HOP | _connection_tokens(headers)
    out: Headers = []
    for name, value in headers:
        leaked = (_leak(plan, name) or _leak(plan, value)) if look else None
        if leaked is not None:
            raise _blocked(leaked, host, secure)
        if name.lower() in drop:
            continue
        if swap:
            value, used = _swap(value, bound)  # noqa: PLW2901 - the swapped value goes out
            swapped += used
        out.append((name, value))
    out, injected = _inject(out, bound)
    return Outgoing(target, out, tuple(dict.fromkeys(swapped + injected)))


def _inject(headers: Headers, bound: Sequence[Credential]) -> tuple[Headers, list[str]]:
    """headers with the injected header of each bound credential that asks for one."""
    injected = []
    for credential in bound:
        if credential.injection is not None:
            header = credential.injection.header.encode("ascii")
            value = credential.injection.format.encode().replace(b"{value}", credential.real)
            headers = [(n, v) for n, v in headers if n.lower() != header.lower()]
            headers.append((header, value))
            injected.append(credential.name)
    return headers, injected


def secrets(policy: Policy) -> Secrets:
    """Every real value of the policy, in every form the masker looks for."""
    return policy.memo("secrets", lambda: Secrets(c.real for c in policy.credentials))


def _restub_pattern(policy: Policy) -> tuple[re.Pattern[bytes] | None, dict[bytes, bytes]]:
    def make() -> tuple[re.Pattern[bytes] | None, dict[bytes, bytes]]:
        reals = sorted((c.real for c in policy.credentials), key=len, reverse=True)
        stubs = {c.real.lower(): c.stub for c in policy.credentials}
        pattern = b"|".join(re.escape(r) for r in reals)
        return (re.compile(pattern, re.IGNORECASE) if reals else None), stubs

    return policy.memo("restub", make)


def scrub_head(policy: Policy, masker: Masker, value: bytes) -> bytes:
    """A response head (status line, header names and values): each real value, in any letter
    case, becomes its stub, so a URL or cookie that carries it still works through the vault; any
    other form or start of one is masked."""
    pattern, stubs = _restub_pattern(policy)
    if pattern is not None:
        value = pattern.sub(lambda m: stubs[m.group().lower()], value)
    return masker.text(value)


def body_guard(policy: Policy, host: str, *, secure: bool) -> tuple[bytes, ...]:
    """What a request body to host must not contain (stubs and values of other credentials)."""
    return _plan(policy, host, secure).guard
