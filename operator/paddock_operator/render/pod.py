"""The sandbox Pod: egress-init (or egress-check), the vault (a native sidecar), the model server
and the harness."""

from __future__ import annotations

import hashlib
import json

from paddock import cni, egress, engines, sandbox
from paddock.api.agent import AgentSpec
from paddock.kubeobj import Obj
from paddock_operator.names import SPEC_HASH, AgentRef
from paddock_operator.render.model import model_server
from paddock_operator.render.objects import AGENT_CA_FILE, UPSTREAM_CA_FILE
from paddock_operator.render.security import network_admin, restricted
from paddock_operator.settings import OperatorSettings

PROXY_URL = f"http://127.0.0.1:{sandbox.VAULT_PROXY_PORT}"


def harness_env(spec: AgentSpec, stubs: dict[str, str]) -> list[Obj]:
    """The harness's environment: the user's variables, stubs, proxy, trust and model settings."""
    env: list[Obj] = [{"name": e.name, "value": e.value} for e in spec.harness.env]
    if not any(e.name == "HOME" for e in spec.harness.env):
        env.append({"name": "HOME", "value": f"{sandbox.WORKSPACE_DIR}/.home"})
    env += [{"name": c.name, "value": stubs[c.name]} for c in spec.credentials]
    no_proxy = "localhost,127.0.0.1,::1"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.append({"name": name, "value": PROXY_URL})
    env += [{"name": "NO_PROXY", "value": no_proxy}, {"name": "no_proxy", "value": no_proxy}]
    if not any(e.name == "NODE_USE_ENV_PROXY" for e in spec.harness.env):
        # Node's fetch ignores HTTPS_PROXY unless told (Node 24+, 22.21+); older Nodes still go
        # through the vault, redirected (transparent mode).
        env.append({"name": "NODE_USE_ENV_PROXY", "value": "1"})
    env += [{"name": name, "value": sandbox.CA_CERT_FILE} for name in sandbox.TRUST_ENV]
    model = engines.harness_env(spec.model)
    env += [{"name": name, "value": value} for name, value in model.items()]
    env += [
        {"name": "OPENAI_BASE_URL", "value": model[sandbox.MODEL_URL_ENV]},
        {"name": "PADDOCK_RUNNER_PORT", "value": str(sandbox.RUNNER_PORT)},
    ]
    return env


def _runner_probe(*, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": "/healthz", "port": sandbox.RUNNER_PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def harness_container(spec: AgentSpec, stubs: dict[str, str]) -> Obj:
    """The agent and the runner, as the harness user, seeing stubs and the CA certificate only."""
    harness = spec.harness
    container: Obj = {
        "name": sandbox.HARNESS_CONTAINER,
        "image": harness.image,
        "workingDir": harness.working_dir,
        "env": harness_env(spec, stubs),
        "ports": [
            {
                "name": sandbox.RUNNER_PORT_NAME,
                "containerPort": sandbox.RUNNER_PORT,
                "protocol": "TCP",
            }
        ],
        # Startup probes every second (the same 3 minutes in all): the Pod is Ready up to a
        # period sooner, and startup probes stop once they pass.
        "startupProbe": _runner_probe(period=1, failures=180),
        "readinessProbe": _runner_probe(period=10, failures=3),
        "resources": harness.resources.model_dump(exclude_defaults=True),
        "volumeMounts": [
            {"name": "workspace", "mountPath": sandbox.WORKSPACE_DIR},
            {"name": "trust", "mountPath": sandbox.CA_CERT_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
        "securityContext": restricted(sandbox.HARNESS_UID),
    }
    if harness.command:
        container["command"] = list(harness.command)
    if harness.args:
        container["args"] = list(harness.args)
    return container


UPSTREAM_CA_DIR = "/etc/paddock/upstream-ca"


def vault_env(settings: OperatorSettings) -> list[Obj]:
    """The vault's settings: its configuration file, and what the cluster admin opened."""
    env = [{"name": "PADDOCK_VAULT_CONFIG_FILE", "value": sandbox.VAULT_CONFIG_FILE}]
    if settings.internal_networks:
        networks = json.dumps([str(net) for net in settings.internal_networks])
        env.append({"name": "PADDOCK_VAULT_INTERNAL_NETWORKS", "value": networks})
    if settings.upstream_ca_bundle:
        files = json.dumps([f"{UPSTREAM_CA_DIR}/{UPSTREAM_CA_FILE}"])
        env.append({"name": "PADDOCK_VAULT_UPSTREAM_CA_FILES", "value": files})
    return env


def vault_container(settings: OperatorSettings) -> Obj:
    """The vault, a native sidecar: it starts (and is ready) before the others, and stays."""
    probe = {"httpGet": {"path": "/healthz", "port": "vault-admin"}, "periodSeconds": 1}
    mounts = [
        {"name": "vault-config", "mountPath": sandbox.VAULT_CONFIG_FILE.rsplit("/", 1)[0]},
        {"name": "vault-ca", "mountPath": sandbox.VAULT_CA_DIR, "readOnly": True},
        {"name": "vault-secrets", "mountPath": sandbox.VAULT_SECRETS_DIR, "readOnly": True},
    ]
    if settings.upstream_ca_bundle:
        mounts.append({"name": "upstream-ca", "mountPath": UPSTREAM_CA_DIR, "readOnly": True})
    return {
        "name": sandbox.VAULT_CONTAINER,
        "image": settings.vault_image,
        "imagePullPolicy": settings.image_pull_policy,
        "restartPolicy": "Always",
        "args": ["vault"],
        "env": vault_env(settings),
        "ports": [
            {"name": "vault-proxy", "containerPort": sandbox.VAULT_PROXY_PORT},
            {"name": "vault-admin", "containerPort": sandbox.VAULT_ADMIN_PORT},
        ],
        "startupProbe": probe | {"failureThreshold": 60},  # the others wait on it: every second
        "readinessProbe": probe | {"periodSeconds": 10},
        "volumeMounts": mounts,
        "securityContext": restricted(sandbox.VAULT_UID),
    }


SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
AGENT_CA_DIR = "/etc/paddock/agent-ca"


def trust_script() -> str:
    """Writes the bundle the other containers trust: the image's public roots plus the Agent CA.

    Stops the init container when either file is missing: a partial bundle would only show up
    later, as TLS failures in the harness.
    """
    return (
        "set -eu\n"
        f"cat {SYSTEM_ROOTS} {AGENT_CA_DIR}/{AGENT_CA_FILE} > {sandbox.CA_CERT_FILE}.tmp\n"
        f"mv {sandbox.CA_CERT_FILE}.tmp {sandbox.CA_CERT_FILE}\n"
    )


def egress_init_container(settings: OperatorSettings) -> Obj:
    """Writes the trust bundle, then the iptables rules that send traffic to the vault."""
    return {
        "name": sandbox.EGRESS_INIT_CONTAINER,
        "image": settings.vault_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["/bin/sh", "-c", trust_script() + egress.iptables_script()],
        "volumeMounts": [
            {"name": "xtables-lock", "mountPath": "/run"},
            {"name": "trust", "mountPath": sandbox.CA_CERT_DIR},
            {"name": "vault-config", "mountPath": AGENT_CA_DIR, "readOnly": True},
        ],
        "securityContext": network_admin(),
    }


def egress_check_container(settings: OperatorSettings) -> Obj:
    """CNI mode: writes the trust bundle, then checks, unprivileged, that the node redirected."""
    return {
        "name": sandbox.EGRESS_CHECK_CONTAINER,
        "image": settings.vault_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [
            "/bin/sh",
            "-c",
            trust_script() + f"exec paddock egress-check --port {sandbox.VAULT_TRANSPARENT_PORT}\n",
        ],
        "volumeMounts": [
            {"name": "trust", "mountPath": sandbox.CA_CERT_DIR},
            {"name": "vault-config", "mountPath": AGENT_CA_DIR, "readOnly": True},
        ],
        # Any user but the vault's: the check is that this user's connections are redirected.
        "securityContext": restricted(sandbox.HARNESS_UID),
    }


def _volumes(ref: AgentRef, spec: AgentSpec, settings: OperatorSettings) -> list[Obj]:
    sources = [
        {
            "secret": {
                "name": c.secret_ref.name,
                "items": [{"key": c.secret_ref.key, "path": c.name}],
            }
        }
        for c in spec.credentials
    ]
    secrets: Obj = (
        {"projected": {"sources": sources, "defaultMode": 0o400}} if sources else {"emptyDir": {}}
    )
    ca_items = [{"key": k, "path": k} for k in ("tls.crt", "tls.key")]
    mode = {"defaultMode": 0o400}
    volumes = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": ref.workspace}},
        {"name": "trust", "emptyDir": {}},
        {"name": "vault-config", "configMap": {"name": ref.vault_config}},
        {"name": "vault-ca", "secret": {"secretName": ref.ca_secret, "items": ca_items, **mode}},
        {"name": "vault-secrets", **secrets},
        {"name": "tmp", "emptyDir": {}},
    ]  # fmt: skip
    if settings.egress_mode == "init-container":
        volumes.append({"name": "xtables-lock", "emptyDir": {"medium": "Memory"}})
    if settings.upstream_ca_bundle:
        # Named as an item: the kubelet holds the Pod until the ConfigMap has it, so a vault
        # never starts without the CAs it was told to trust.
        items = [{"key": UPSTREAM_CA_FILE, "path": UPSTREAM_CA_FILE}]
        volumes.append(
            {"name": "upstream-ca", "configMap": {"name": ref.vault_config, "items": items}}
        )
    return volumes


# Settings added after the first release, with what that release did: they count only where they
# differ from it, so that upgrading the operator replaces no sandbox Pod that would not change.
_ADDED_LATER: dict[str, object] = {
    "internal_networks": [],
    "upstream_ca_bundle": "",
    "egress_mode": "init-container",
}


def spec_hash(spec: AgentSpec, settings: OperatorSettings) -> str:
    """A digest of everything the Pod is rendered from: a change means the Pod must be replaced."""
    unset = {name for name, was in _ADDED_LATER.items() if getattr(settings, name) == was}
    material = json.dumps(
        [
            # Not the Pod's: suspending, the volume, the idle policy (added later: left out
            # whole, so that Pods made before it existed are not replaced).
            spec.model_dump(mode="json", exclude={"suspend", "workspace", "lifecycle"}),
            settings.model_dump(mode="json", exclude=unset),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def pod(ref: AgentRef, spec: AgentSpec, settings: OperatorSettings, stubs: dict[str, str]) -> Obj:
    """The sandbox Pod of an Agent."""
    cni_mode = settings.egress_mode == "cni"
    egress_container = egress_check_container if cni_mode else egress_init_container
    init = [egress_container(settings), vault_container(settings)]
    containers = [harness_container(spec, stubs)]
    volumes = _volumes(ref, spec, settings)
    server = model_server(spec.model, settings)
    if server is not None:
        init += server.init_containers
        containers.append(server.container)
        volumes += server.volumes
    meta = ref.metadata(ref.pod, "sandbox")
    meta["annotations"] = {SPEC_HASH: spec_hash(spec, settings)}
    if cni_mode:
        # The node's plugin applies its script only to Pods that name it, by digest.
        meta["annotations"][cni.ANNOTATION] = cni.annotation_value()
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "fsGroup": sandbox.HARNESS_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": init,
            "containers": containers,
            "volumes": volumes,
        },
    }
    if spec.runtime_class_name:
        body["spec"]["runtimeClassName"] = spec.runtime_class_name
    return body
