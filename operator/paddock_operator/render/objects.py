"""The Agent's other objects: Secret and ConfigMaps, workspace, Service and NetworkPolicy."""

from __future__ import annotations

import base64
import ipaddress
import json

from paddock import sandbox
from paddock.api.agent import AgentSpec
from paddock.kubeobj import Obj
from paddock.networks import BLOCKED
from paddock.pki import KeyPair
from paddock_operator.names import AgentRef
from paddock_operator.render.model import download_hosts
from paddock_operator.settings import OperatorSettings

AGENT_CA_FILE = "agent-ca.crt"
UPSTREAM_CA_FILE = "upstream-ca.crt"

# Kubernetes parses ::ffff:0:0/96 as 0.0.0.0/0, so that one range of the table stays out of the
# policy as itself (the vault refuses it, and the policy's ::/3 holds it).
_NOT_EXPRESSIBLE = frozenset({ipaddress.ip_network("::ffff:0:0/96")})


def network_policy_excepts(version: int | None = None) -> list[str]:
    """The blocked ranges (paddock.networks.BLOCKED) a sandbox's NetworkPolicy excepts."""
    return [
        str(r.network)
        for r in BLOCKED
        if r.network not in _NOT_EXPRESSIBLE and version in (None, r.network.version)
    ]


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def ca_secret(ref: AgentRef, ca: KeyPair, stubs: dict[str, str]) -> Obj:
    """The Agent's CA and its credential stubs (kept here so they survive Pod restarts)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ref.metadata(ref.ca_secret, "ca"),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": _b64(ca.cert_pem),
            "tls.key": _b64(ca.key_pem),
            "stubs.json": _b64(json.dumps(stubs, sort_keys=True)),
        },
    }


def vault_config(spec: AgentSpec, stubs: dict[str, str]) -> sandbox.VaultConfig:
    """What the vault needs to know: stubs, hosts, and where each real value is mounted."""
    credentials = [
        sandbox.VaultCredential(
            name=c.name,
            stub=stubs[c.name],
            value_file=f"{sandbox.VAULT_SECRETS_DIR}/{c.name}",
            hosts=list(c.hosts),
            injection=(
                sandbox.Injection(header=c.injection.header, format=c.injection.format)
                if c.injection
                else None
            ),
            swap_in_query=c.swap_in_query,
        )
        for c in spec.credentials
    ]
    allow = [
        *spec.egress.allow,
        *(h for h in download_hosts(spec.model) if h not in spec.egress.allow),
    ]
    return sandbox.VaultConfig(credentials=credentials, egress_allow=allow)


def vault_config_map(
    ref: AgentRef,
    spec: AgentSpec,
    stubs: dict[str, str],
    ca_cert_pem: bytes,
    settings: OperatorSettings,
) -> Obj:
    """The vault's configuration, the Agent CA's certificate and the upstream CAs the cluster
    admin added: stubs and certificates, never real values or keys."""
    config = vault_config(spec, stubs).model_dump_json(by_alias=True, indent=2)
    data = {"config.json": config, AGENT_CA_FILE: ca_cert_pem.decode()}
    if settings.upstream_ca_bundle:
        data[UPSTREAM_CA_FILE] = settings.upstream_ca_bundle
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ref.metadata(ref.vault_config, "vault"),
        "data": data,
    }


def workspace_claim(ref: AgentRef, spec: AgentSpec) -> Obj:
    """The workspace volume; owned by the Agent only when its policy is Delete."""
    claim: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": ref.metadata(
            ref.workspace, "workspace", owned=spec.workspace.deletion_policy == "Delete"
        ),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.workspace.size}},
        },
    }
    if spec.workspace.storage_class_name:
        claim["spec"]["storageClassName"] = spec.workspace.storage_class_name
    return claim


def service(ref: AgentRef) -> Obj:
    """The runner and model ports, for the gateway."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ref.metadata(ref.service, "sandbox"),
        "spec": {
            "selector": {"paddock.dev/agent": ref.name},
            "ports": [
                {
                    "name": "runner",
                    "port": sandbox.RUNNER_PORT,
                    "targetPort": sandbox.RUNNER_PORT_NAME,
                },
                {
                    "name": "model",
                    "port": sandbox.MODEL_PORT,
                    "targetPort": sandbox.MODEL_PORT_NAME,
                },
            ],
        },
    }


def network_policy(ref: AgentRef, settings: OperatorSettings) -> Obj:
    """Ingress only from the gateway and operator; egress only DNS, public addresses and the
    internal networks the cluster admin opened.

    NetworkPolicies see Service traffic after its DNAT, so an internal network given as Service
    addresses is opened by the vault but not here: a Service's Pods need a NetworkPolicy of their
    own that lets the sandboxes reach them (policies add up; see docs/chart.md).
    """
    system = {"kubernetes.io/metadata.name": settings.system_namespace}
    peers = [
        {"namespaceSelector": {"matchLabels": system}, "podSelector": {"matchLabels": selector}}
        for selector in (settings.gateway_selector, settings.operator_selector)
    ]
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    internal = (
        [{"to": [{"ipBlock": {"cidr": str(net)}} for net in settings.internal_networks]}]
        if settings.internal_networks
        else []
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": ref.metadata(ref.network_policy, "sandbox"),
        "spec": {
            "podSelector": {"matchLabels": {"paddock.dev/agent": ref.name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": peers,
                    "ports": [
                        {"protocol": "TCP", "port": sandbox.RUNNER_PORT},
                        {"protocol": "TCP", "port": sandbox.MODEL_PORT},
                    ],
                }
            ],
            "egress": [
                {"to": [{"namespaceSelector": {}}], "ports": dns_ports},
                {
                    "to": [
                        {"ipBlock": {"cidr": "0.0.0.0/0", "except": network_policy_excepts(4)}},
                        {"ipBlock": {"cidr": "::/0", "except": network_policy_excepts(6)}},
                    ]
                },
                *internal,
            ],
        },
    }
