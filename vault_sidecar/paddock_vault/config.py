"""The vault's policy, loaded from the operator's files, and re-loaded when they change.

A Policy is an immutable snapshot: the credentials with their real values, the allow list and the
CA. Each request takes the snapshot current when it starts, so a rotation never disturbs a request
in flight nor drops a connection; the next request on the same connection uses the new values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from paddock import pki
from paddock.sandbox import Injection, VaultConfig
from paddock_vault import hosts

log = logging.getLogger(__name__)
_MIN_SECRET = 8
_MEMO = 4096
T = TypeVar("T")


class ConfigError(Exception):
    """The configuration files are missing, malformed or unsafe."""


class Route(Enum):
    """What the vault does with connections to a host."""

    DECRYPT = "decrypt"
    """A credential's host: terminate TLS, swap stubs, scrub responses."""
    TUNNEL = "tunnel"
    """On the allow list only: pass the TLS bytes through after the SNI check."""
    REFUSE = "refuse"


@dataclass(frozen=True)
class Credential:
    """One credential with its real value, as the request path uses it."""

    name: str
    stub: bytes
    real: bytes
    hosts: tuple[str, ...]
    injection: Injection | None
    swap_in_query: bool

    def binds(self, host: str) -> bool:
        """Whether the real value may go to this normalised host."""
        return hosts.matches_any(self.hosts, host)


@dataclass(frozen=True)
class Policy:
    """Everything the vault decides with, at one moment."""

    credentials: tuple[Credential, ...]
    egress_allow: tuple[str, ...]
    ca: pki.KeyPair
    _memo: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """make(), computed once per key for this policy (a new policy starts afresh)."""
        try:
            found: T = self._memo[key]
        except KeyError:
            found = make()
            if len(self._memo) < _MEMO:
                self._memo[key] = found
        return found

    def bound(self, host: str) -> tuple[Credential, ...]:
        """The credentials whose real values may go to a normalised host."""
        return self.memo(
            ("bound", host), lambda: tuple(c for c in self.credentials if c.binds(host))
        )

    def route(self, host: str) -> Route:
        """Decrypt, tunnel or refuse connections to a normalised host."""
        return self.memo(("route", host), lambda: self._route(host))

    def _route(self, host: str) -> Route:
        if hosts.is_ip(host):
            return Route.REFUSE
        if self.bound(host):
            return Route.DECRYPT
        if hosts.matches_any(self.egress_allow, host):
            return Route.TUNNEL
        return Route.REFUSE


def _pattern(host: str) -> str:
    wildcard = host.startswith("*.")
    name = hosts.normalize(host.removeprefix("*."))
    return f"*.{name}" if wildcard else name


def _read_secret(path: Path, name: str) -> bytes:
    value = path.read_bytes().rstrip(b"\r\n")
    if len(value) < _MIN_SECRET:
        raise ConfigError(f"credential {name}: value shorter than {_MIN_SECRET} bytes")
    if any(b < 0x20 or b == 0x7F for b in value):
        raise ConfigError(f"credential {name}: value has control characters")
    return value


def load(config_file: Path) -> Policy:
    """Read the VaultConfig, every value file and the CA; ConfigError when any is wrong."""
    try:
        config = VaultConfig.model_validate_json(config_file.read_bytes())
        ca = pki.KeyPair(
            Path(config.ca_cert_file).read_bytes(), Path(config.ca_key_file).read_bytes()
        )
        ca.private_key()
        credentials = tuple(
            Credential(
                name=c.name,
                stub=c.stub.encode("ascii"),
                real=_read_secret(Path(c.value_file), c.name),
                hosts=tuple(map(_pattern, c.hosts)),
                injection=c.injection,
                swap_in_query=c.swap_in_query,
            )
            for c in config.credentials
        )
    except (OSError, ValueError, TypeError, ValidationError) as error:
        raise ConfigError(f"{config_file}: {error}") from error
    for credential in credentials:
        injection = credential.injection
        if injection is not None and not (
            re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", injection.header)
            and injection.format.isprintable()
            and injection.format.isascii()
        ):
            raise ConfigError(f"credential {credential.name}: invalid injection header or format")
    stubs = [c.stub for c in credentials]
    if len(set(stubs)) != len(stubs) or any(len(s) < _MIN_SECRET for s in stubs):
        raise ConfigError("stubs must be distinct and at least 8 characters long")
    if any(c.stub in d.real or d.real in c.stub for c in credentials for d in credentials):
        raise ConfigError("a stub and a real value contain one another")
    return Policy(credentials, tuple(map(_pattern, config.egress_allow)), ca)


def _fingerprint(paths: list[Path]) -> tuple[tuple[int, int, int], ...]:
    stats = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stats.append((0, 0, 0))
        else:
            stats.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stats)


class ConfigWatcher:
    """Holds the current Policy and replaces it when the files change (Secret rotation)."""

    def __init__(self, config_file: Path, on_reload: Callable[[bool], None] | None = None) -> None:
        self.config_file = config_file
        self.policy = load(config_file)
        self._on_reload = on_reload or (lambda _ok: None)
        self._seen = self._failed = _fingerprint(self._paths())

    def _paths(self) -> list[Path]:
        config = self.config_file
        with contextlib.suppress(OSError, ValidationError):
            parsed = VaultConfig.model_validate_json(config.read_bytes())
            extra = [parsed.ca_cert_file, parsed.ca_key_file]
            return [config, *map(Path, extra), *(Path(c.value_file) for c in parsed.credentials)]
        return [config]

    def check(self) -> bool:
        """Reload when any file changed; True when a new policy was taken."""
        seen = _fingerprint(self._paths())
        if seen in (self._seen, self._failed):
            return False
        try:
            self.policy = load(self.config_file)
        except ConfigError as error:
            # Files of a Secret change one by one; the next change is tried again.
            log.error("configuration change not taken, keeping the previous one: %s", error)
            self._failed = seen
            self._on_reload(False)
            return False
        self._seen = seen
        log.info("configuration reloaded: %d credentials", len(self.policy.credentials))
        self._on_reload(True)
        return True

    async def run(self, interval: float) -> None:
        """Check for changes every interval seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            self.check()
