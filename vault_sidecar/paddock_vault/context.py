"""What every connection handler shares: settings, the policy, the guard, the certificates."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from paddock_vault import audit, swap
from paddock_vault.certs import LeafCache
from paddock_vault.config import ConfigWatcher, Policy
from paddock_vault.errors import PolicyError, VaultError
from paddock_vault.metrics import Metrics
from paddock_vault.netguard import NetGuard
from paddock_vault.scrub import Masker
from paddock_vault.settings import VaultSettings

Dialer = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens a TCP (or TLS) connection; asyncio.open_connection's signature."""


def upstream_tls_context(settings: VaultSettings) -> ssl.SSLContext:
    """Verifying client context: the system trust store plus the configured extra CAs."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in settings.upstream_ca_files:
        context.load_verify_locations(cafile=str(path))
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class Context:
    """Shared state of one running vault."""

    settings: VaultSettings
    watcher: ConfigWatcher
    guard: NetGuard
    dialer: Dialer = asyncio.open_connection
    metrics: Metrics = field(default_factory=Metrics)
    upstream_tls: ssl.SSLContext = field(init=False)
    _leaves: LeafCache | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.upstream_tls = upstream_tls_context(self.settings)

    @property
    def policy(self) -> Policy:
        """The policy in force now."""
        return self.watcher.policy

    def leaf_context(self, host: str) -> ssl.SSLContext:
        """The TLS server context for host, under the current CA."""
        ca = self.policy.ca
        if self._leaves is None or self._leaves.ca != ca:
            self._leaves = LeafCache(ca)
        before = self._leaves.minted
        context = self._leaves.context_for(host)
        self.metrics.leaves_minted += self._leaves.minted - before
        return context

    def check_port(self, port: int) -> None:
        """Refuse destination ports that are not allowed."""
        if port not in self.settings.allowed_ports:
            raise PolicyError(f"port {port} is not allowed", reason="port")

    def masker(self) -> Masker:
        """A masker for bytes the agent will see: responses, and the vault's own answers."""
        return Masker(swap.secrets(self.policy))

    def redact(self, text: str) -> str:
        """text with every real value, or start or spelling of one, masked (for logs)."""
        masker = self.masker()
        return masker.text(text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )

    def refusal(self, error: VaultError, mode: str, **where: Any) -> None:
        """Audit and count a refusal."""
        self.metrics.block(mode, error.reason)
        self.metrics.request(mode, "blocked" if isinstance(error, PolicyError) else "error")
        audit.record(
            "blocked" if isinstance(error, PolicyError) else "error",
            mode=mode,
            reason=error.reason,
            message=self.redact(error.message),
            status=error.status,
            **where,
        )
