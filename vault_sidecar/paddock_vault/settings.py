"""The sidecar's settings: environment variables prefixed PADDOCK_VAULT_, unsafe values refused."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paddock.networks import METADATA_ADDRESSES, InternalNetworks
from paddock.sandbox import (
    VAULT_ADMIN_PORT,
    VAULT_CONFIG_FILE,
    VAULT_PROXY_PORT,
    VAULT_TRANSPARENT_PORT,
)

Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86400)]
_NARROWEST = {4: 16, 6: 48}


class VaultSettings(BaseSettings):
    """How the vault sidecar runs; the credentials themselves come from config_file."""

    model_config = SettingsConfigDict(env_prefix="PADDOCK_VAULT_", frozen=True, extra="forbid")

    config_file: Path = Path(VAULT_CONFIG_FILE)
    """The VaultConfig JSON the operator mounts (re-read when it or a value file changes)."""
    listen_hosts: list[str] = ["127.0.0.1", "::1"]
    """Addresses of the proxy and transparent listeners (iptables REDIRECT lands on loopback)."""
    proxy_port: Port = VAULT_PROXY_PORT
    transparent_port: Port | None = VAULT_TRANSPARENT_PORT
    """None turns transparent mode off."""
    admin_host: str = "0.0.0.0"  # noqa: S104 - probes and Prometheus come from outside the Pod
    admin_port: Port = VAULT_ADMIN_PORT
    allowed_ports: Annotated[list[Port], Field(min_length=1)] = [443, 80]
    """Destination ports the vault connects to; everything else is refused."""
    upstream_ca_files: list[Path] = []
    """CA bundles trusted for upstream servers, in addition to the system trust store."""
    reload_interval: Seconds = 1.0
    connect_timeout: Seconds = 10.0
    header_timeout: Seconds = 30.0
    """How long a client may take to send a whole request head, from its first byte (from the
    connect, for a connection's first request), however slowly it trickles; also the longest the
    vault waits for a ClientHello, a TLS handshake, or the next bytes of a request body."""
    idle_timeout: Seconds = 120.0
    upstream_timeout: Seconds = 300.0
    """How long to wait for the next bytes from upstream (response head, body chunks)."""
    scrub_flush_seconds: Annotated[float, Field(gt=0, le=0.1)] = 0.001
    """How long a response's held-back bytes wait for more before leaving anyway (SSE latency)."""
    max_header_bytes: Annotated[int, Field(ge=1024, le=1 << 20)] = 64 * 1024
    max_body_bytes: Annotated[int, Field(ge=0)] = 1 << 30
    max_connections: Annotated[int, Field(ge=1)] = 1024
    """Connections the proxy and transparent listeners hold at once, in all."""
    max_connections_per_client: Annotated[int, Field(ge=1)] = 768
    """Of those, what one client may hold: a client is the user owning the connecting socket
    (the harness, the model server), else its source address; see paddock_vault.clients."""
    admin_max_connections: Annotated[int, Field(ge=1)] = 64
    """The admin port's own budget (probes, Prometheus): agent connections never use it."""
    log_level: str = "INFO"
    internal_networks: InternalNetworks = []
    """Private networks the vault may connect to, as a cluster admin allowed every sandbox (an
    internal GitHub Enterprise, an in-cluster API's Service addresses); the operator sets it from
    its own `internal_networks`. Loopback, link-local and metadata addresses are always refused."""
    unsafe_allow_cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    """TESTS ONLY: private or loopback networks the vault may connect to. Logged loudly."""

    @field_validator("unsafe_allow_cidrs")
    @classmethod
    def _narrow_and_no_metadata(
        cls, value: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        for net in value:
            if net.prefixlen < _NARROWEST[net.version]:
                raise ValueError(f"{net} is too wide: at most /{_NARROWEST[net.version]}")
            if any(ip in net for ip in METADATA_ADDRESSES if ip.version == net.version):
                raise ValueError(f"{net} contains a cloud metadata address")
        return value
