"""The operator's settings: one object, from PADDOCK_OPERATOR_* environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography import x509
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paddock.networks import InternalNetworks

Image = Annotated[str, Field(min_length=1, max_length=512)]


class OperatorSettings(BaseSettings):
    """What the operator needs to know that the Agent does not say."""

    model_config = SettingsConfigDict(env_prefix="PADDOCK_OPERATOR_", frozen=True)

    llamacpp_image: Image = "paddock/llama-server:0.1.0"
    """Model server image for engine llamacpp (llama-server)."""
    vllm_image: Image = "vllm/vllm-openai:v0.11.0"
    """Model server image for engine vllm."""
    vault_image: Image = "paddock/vault:0.1.0"
    """The vault sidecar's image (also runs the egress-init container: it ships iptables)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of the images the operator picks (the harness's is the cluster default)."""

    egress_mode: Literal["init-container", "cni"] = "cni"
    """How each sandbox's egress redirect is set up: by the node's paddock-egress CNI plugin,
    which the chart's `cni` DaemonSet installs (the Pod holds no privilege and passes
    `restricted`; a Pod on a node without the plugin does not start and is replaced), or by an
    init container running as root with NET_ADMIN and NET_RAW (the Pod needs the `privileged`
    Pod Security level), for clusters where no CNI plugin can be installed."""

    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the Pod
    """Address the /metrics endpoint listens on."""
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    """Port of the /metrics endpoint (Prometheus text format); 0 turns it off."""

    gateway_selector: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "paddock-gateway"}
    )
    """Labels of the gateway Pods, which alone (with the operator) may reach a sandbox."""
    operator_selector: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "paddock-operator"}
    )
    """Labels of the operator's own Pods."""
    system_namespace: str = "paddock-system"
    """Namespace of the gateway and operator, for the sandboxes' NetworkPolicy."""

    internal_networks: InternalNetworks = []
    """Private networks every sandbox may reach through its vault, a cluster admin's choice (an
    internal GitHub Enterprise, an in-cluster API's Service addresses): set in each vault, and
    allowed by each sandbox's NetworkPolicy. Loopback, link-local and metadata are refused."""
    upstream_ca_bundle: str = ""
    """PEM certificates the vaults trust for upstream servers besides the public roots (the CA of
    those internal services)."""

    retry_delay: Annotated[float, Field(gt=0, le=300)] = 5.0
    """Seconds before retrying a reconcile that waits on something (a Secret, a deletion)."""
    resync_interval: Annotated[float, Field(gt=0)] = 30.0
    """Seconds between periodic re-checks of every Agent, in case an event was missed."""
    api_requests_in_flight: Annotated[int, Field(ge=1, le=256)] = 16
    """Requests to the API server at once; more wait their turn (urgent ones first). On the
    2-core bench the API server is the limit from 8 up; a larger control plane, further away,
    gains from more."""

    @field_validator("upstream_ca_bundle")
    @classmethod
    def _certificates_only(cls, value: str) -> str:
        if "PRIVATE KEY" in value:
            raise ValueError("holds a private key: the vaults need the CA certificates only")
        if value.strip():
            try:
                x509.load_pem_x509_certificates(value.encode())
            except ValueError as error:
                raise ValueError(f"not a bundle of PEM certificates: {error}") from None
        return value
