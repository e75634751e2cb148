"""The sandbox Pod's layout, which the operator renders and every container relies on.

Ports, user ids, mount paths and environment variable names live here once, so the operator, the
vault sidecar, the runner and the gateway cannot drift apart. The vault's configuration file is a
contract between the operator (which writes it) and the sidecar (which reads it), so its model is
here too.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# --- containers and their users -----------------------------------------------------------------

HARNESS_CONTAINER: Final = "harness"
MODEL_CONTAINER: Final = "model"
VAULT_CONTAINER: Final = "vault"
EGRESS_INIT_CONTAINER: Final = "egress-init"
"""Init-container mode: writes the trust bundle and the iptables rules (root, NET_ADMIN)."""
EGRESS_CHECK_CONTAINER: Final = "egress-check"
"""CNI mode: writes the trust bundle and checks the node's redirect (no privilege)."""

HARNESS_UID: Final = 1000
MODEL_UID: Final = 1001
# Only connections from this user leave the Pod directly; iptables sends everyone else's to it.
VAULT_UID: Final = 1337

# --- ports --------------------------------------------------------------------------------------

RUNNER_PORT: Final = 7000
"""The runner's session protocol (HTTP + SSE), reached by the gateway."""
RUNNER_PORT_NAME: Final = "runner"
MODEL_PORT: Final = 8080
"""llama-server or vllm serve: OpenAI-compatible API, /health, /metrics."""
MODEL_PORT_NAME: Final = "model"
"""The names of the Pod's ports, which the Service's targetPorts and the probes refer to."""
VAULT_PROXY_PORT: Final = 15001
"""Explicit proxy (HTTP_PROXY / HTTPS_PROXY, plain HTTP and CONNECT)."""
VAULT_TRANSPARENT_PORT: Final = 15006
"""Where iptables redirects every other outbound TCP connection (SO_ORIGINAL_DST, SNI)."""
VAULT_ADMIN_PORT: Final = 15090
"""/healthz and /metrics; iptables keeps the harness and model users from reaching it."""

# --- mounts -------------------------------------------------------------------------------------

WORKSPACE_DIR: Final = "/workspace"
MODELS_DIR: Final = "/models"
"""llama-server's --models-dir: each served model appears here as <name>.gguf."""
CA_CERT_DIR: Final = "/etc/paddock/ca"
"""The Agent CA's certificate, in every container that makes TLS connections (ca.crt)."""
VAULT_CA_DIR: Final = "/etc/paddock/vault/ca"
"""The Agent CA's certificate and key (tls.crt, tls.key): the vault container only."""
VAULT_CONFIG_FILE: Final = "/etc/paddock/vault/config.json"
"""The vault's VaultConfig, written by the operator."""
VAULT_SECRETS_DIR: Final = "/etc/paddock/vault/secrets"
"""Real credential values, one file per credential name: the vault container only."""

CA_CERT_FILE: Final = f"{CA_CERT_DIR}/ca.crt"
TRUST_ENV: Final = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
"""Variables that point common TLS stacks at CA_CERT_FILE (a bundle: system roots + Agent CA)."""

MODEL_URL_ENV: Final = "PADDOCK_MODEL_URL"
"""Base URL of the OpenAI-compatible API the agent should use (ends in /v1)."""
MODEL_NAME_ENV: Final = "PADDOCK_MODEL"
"""The Agent's default model (spec.model.default): what to ask for when nothing else says."""


# --- the vault's configuration ------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class Injection(_Wire):
    """Add the real value as a header on requests to the credential's hosts."""

    header: str
    format: str
    """Header value with {value} where the secret goes."""


class VaultCredential(_Wire):
    """One credential as the vault sees it: never the value itself, only where to read it."""

    name: str
    """Environment variable name the agent sees."""
    stub: str
    """The stand-in value in the agent's environment, stub_<name>_<random>."""
    value_file: str
    """File holding the real value (re-read when it changes: Secret rotation)."""
    hosts: Annotated[list[str], Field(min_length=1)]
    """Exact hosts or *.domain wildcards the real value may be sent to."""
    injection: Injection | None = None
    swap_in_query: bool = False


class VaultConfig(_Wire):
    """The whole configuration file the operator mounts at VAULT_CONFIG_FILE."""

    credentials: list[VaultCredential] = Field(default_factory=list)
    egress_allow: list[str] = Field(default_factory=list)
    """Hosts reachable without credentials: tunnelled after an SNI check, never decrypted."""
    ca_cert_file: str = f"{VAULT_CA_DIR}/tls.crt"
    ca_key_file: str = f"{VAULT_CA_DIR}/tls.key"
