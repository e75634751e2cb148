"""The gateway's one settings object, read from PADDOCK_GATEWAY_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _in_cluster_url() -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://{host}:{port}"


class GatewaySettings(BaseSettings):
    """How the gateway reaches Redis and the Kubernetes API, and how long it keeps sessions."""

    model_config = SettingsConfigDict(env_prefix="PADDOCK_GATEWAY_", extra="forbid")

    host: str = "0.0.0.0"  # noqa: S104 - a server in a Pod listens on the Pod's address
    """Address to listen on."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    """Port to listen on."""
    redis_url: str = "redis://localhost:6379/0"
    """Where sessions live: redis://, rediss:// or unix://."""
    redis_max_connections: Annotated[int, Field(ge=8)] = 4096
    """Each open event stream holds one connection while it waits for events."""
    metrics: bool = True
    """Record Prometheus metrics and serve them at GET /metrics on `port` (no token needed, no
    session data in them); false: neither."""

    kube_url: str = Field(default_factory=_in_cluster_url)
    """The Kubernetes API server (https)."""
    kube_token_file: Path = _SA_DIR / "token"
    """The gateway's own bearer token (re-read when it rotates)."""
    kube_ca_file: Path | None = _SA_DIR / "ca.crt"
    """CA bundle that signed the API server's certificate; None: the system's roots."""
    auth_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 10.0
    """How long a TokenReview or SubjectAccessReview answer is reused."""
    token_audiences: list[str] = Field(default_factory=list)
    """Audiences a client token must be bound to; empty: the API server's own."""

    max_events_per_session: Annotated[int, Field(ge=100)] = 100_000
    """Retention by length: older events are trimmed (clients behind them get `reset`)."""
    session_idle_seconds: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    """Retention by age: a session untouched this long is removed."""
    deleted_grace_seconds: Annotated[int, Field(ge=1)] = 60
    """A deleted session's events stay readable this long, so streams can see `end`."""

    keepalive_seconds: Annotated[float, Field(gt=0, le=60)] = 15.0
    """Interval of SSE keep-alive comments on an idle stream."""
    lease_seconds: Annotated[float, Field(ge=0.5, le=120)] = 5.0
    """A replica driving a turn renews its lease this often x3; another takes over after it."""
    sweep_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    """How often a replica looks for turns that no live replica is driving."""
    agent_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    """How often the Agent's status is read while waiting for it to be Ready."""
    restart_timeout_seconds: Annotated[float, Field(gt=0)] = 900.0
    """How long a turn waits for its Agent to be Ready again before it ends with an error."""
    runner_health_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    """How often a streaming turn checks that its runner is still the same incarnation."""

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> GatewaySettings:
        if not self.kube_url.startswith("https://"):
            raise ValueError("kube_url must be https://: bearer tokens go over it")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        if self.sweep_seconds > self.lease_seconds:
            raise ValueError("sweep_seconds must not exceed lease_seconds")
        return self
