"""What the operator renders for an Agent, checked without a cluster."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from paddock import cni, pki, sandbox
from paddock.api.agent import AgentSpec
from paddock_operator.names import AgentRef
from paddock_operator.render import objects
from paddock_operator.render.pod import AGENT_CA_DIR, SYSTEM_ROOTS, pod, spec_hash, trust_script
from paddock_operator.settings import OperatorSettings
from paddock_operator.stubs import reconcile_stubs
from paddock_vault.settings import VaultSettings

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REF = AgentRef("coder", "team-a", "00000000-0000-0000-0000-000000000001")
SETTINGS = OperatorSettings()
INIT_CONTAINER = OperatorSettings(egress_mode="init-container")
"""The mode for clusters where no CNI plugin can be installed (CNI mode is the default)."""


def spec_of(example: str, **changes: Any) -> AgentSpec:
    docs = yaml.safe_load_all((EXAMPLES / example).read_text())
    body = next(d for d in docs if d and d["kind"] == "Agent")
    body["spec"].update(changes)
    return AgentSpec.model_validate(body["spec"])


def container(body: dict[str, Any], name: str) -> dict[str, Any]:
    everything = body["spec"]["initContainers"] + body["spec"]["containers"]
    return next(c for c in everything if c["name"] == name)


def test_harness_sees_stubs_proxy_and_trust_only() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    stubs = reconcile_stubs(spec, {})
    harness = container(pod(REF, spec, SETTINGS, stubs), sandbox.HARNESS_CONTAINER)
    env = {e["name"]: e["value"] for e in harness["env"]}
    assert env["GITHUB_TOKEN"] == stubs["GITHUB_TOKEN"]
    assert env["GITHUB_TOKEN"].startswith("stub_github_token_")
    assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{sandbox.VAULT_PROXY_PORT}"
    assert env["NODE_USE_ENV_PROXY"] == "1"  # else Node's fetch ignores HTTPS_PROXY
    for name in sandbox.TRUST_ENV:
        assert env[name] == sandbox.CA_CERT_FILE
    assert env[sandbox.MODEL_URL_ENV] == f"http://127.0.0.1:{sandbox.MODEL_PORT}/v1"
    assert "envFrom" not in harness
    assert all("valueFrom" not in e for e in harness["env"])
    mounted = {m["name"] for m in harness["volumeMounts"]}
    assert mounted == {"workspace", "trust", "tmp"}


def test_only_the_vault_mounts_real_values_and_the_ca_key() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    volumes = {v["name"]: v for v in body["spec"]["volumes"]}
    secret_volumes = {
        name
        for name, v in volumes.items()
        if "secret" in v or any("secret" in s for s in v.get("projected", {}).get("sources", []))
    }
    assert secret_volumes == {"vault-ca", "vault-secrets"}
    for c in body["spec"]["initContainers"] + body["spec"]["containers"]:
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        if c["name"] == sandbox.VAULT_CONTAINER:
            assert secret_volumes <= mounts
        else:
            assert not mounts & secret_volumes, c["name"]
    projected = volumes["vault-secrets"]["projected"]["sources"]
    assert projected == [
        {"secret": {"name": "github", "items": [{"key": "token", "path": "GITHUB_TOKEN"}]}}
    ]


def test_every_container_is_locked_down() -> None:
    spec = spec_of("vllm-agent.yaml", runtimeClassName="gvisor")
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    assert body["spec"]["automountServiceAccountToken"] is False
    assert body["spec"]["runtimeClassName"] == "gvisor"
    assert body["spec"]["securityContext"]["runAsNonRoot"] is True
    for c in body["spec"]["initContainers"] + body["spec"]["containers"]:
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, c["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"], c["name"]
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert ctx["readOnlyRootFilesystem"] is True, c["name"]
        if c["name"] == sandbox.EGRESS_INIT_CONTAINER:
            assert ctx["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
            assert "restartPolicy" not in c  # runs to completion before anything else
        else:
            assert "add" not in ctx["capabilities"], c["name"]
            assert ctx["runAsNonRoot"] is True, c["name"]
    uids = {c["name"]: c["securityContext"]["runAsUser"] for c in body["spec"]["containers"]}
    assert uids == {sandbox.HARNESS_CONTAINER: 1000, sandbox.MODEL_CONTAINER: 1001}
    assert container(body, sandbox.VAULT_CONTAINER)["securityContext"]["runAsUser"] == 1337


def test_vault_is_a_native_sidecar_after_the_egress_rules() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    init = pod(REF, spec, INIT_CONTAINER, reconcile_stubs(spec, {}))["spec"]["initContainers"]
    assert [c["name"] for c in init] == [sandbox.EGRESS_INIT_CONTAINER, sandbox.VAULT_CONTAINER]
    assert init[1]["restartPolicy"] == "Always"
    assert "--to-ports 15006" in init[0]["command"][-1]
    # CNI mode (the default): the check takes the rules' place, still before the vault.
    init = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))["spec"]["initContainers"]
    assert [c["name"] for c in init] == [sandbox.EGRESS_CHECK_CONTAINER, sandbox.VAULT_CONTAINER]


@pytest.mark.parametrize(
    ("settings", "first"),
    [(INIT_CONTAINER, sandbox.EGRESS_INIT_CONTAINER), (SETTINGS, sandbox.EGRESS_CHECK_CONTAINER)],
)
def test_trust_bundle_is_public_roots_plus_the_agent_ca_certificate_only(
    settings: OperatorSettings, first: str
) -> None:
    spec = spec_of("llamacpp-agent.yaml")
    body = pod(REF, spec, settings, reconcile_stubs(spec, {}))
    init = container(body, first)
    script = init["command"][-1]
    assert f"> {sandbox.CA_CERT_FILE}.tmp" in script
    assert "/etc/ssl/certs/ca-certificates.crt /etc/paddock/agent-ca/agent-ca.crt" in script
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts["trust"] == sandbox.CA_CERT_DIR
    assert mounts["vault-config"] == "/etc/paddock/agent-ca"  # the certificate, never the key
    config = objects.vault_config_map(
        REF, spec, {"GITHUB_TOKEN": "s"}, b"-----CERT-----\n", SETTINGS
    )
    assert set(config["data"]) == {"config.json", "agent-ca.crt"}


def test_llamacpp_serves_every_model_from_its_models_dir() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    model = container(pod(REF, spec, SETTINGS, {"GITHUB_TOKEN": "s"}), sandbox.MODEL_CONTAINER)
    assert model["image"] == SETTINGS.llamacpp_image
    assert model["command"] == ["llama-server"]
    args = model["args"]
    assert args[args.index("--models-dir") + 1] == sandbox.MODELS_DIR
    assert args[args.index("--port") + 1] == str(sandbox.MODEL_PORT)
    assert "--jinja" in args
    assert model["ports"] == [{"name": "model", "containerPort": 8080, "protocol": "TCP"}]
    assert model["args"][-2:] == ["--ctx-size", "16384"]
    files = {m["mountPath"]: m.get("subPath") for m in model["volumeMounts"]}
    assert files["/models/tiny.gguf"] == "tiny/tiny-llama.gguf"
    assert files["/models/tiny-alt.gguf"] == "tiny/tiny-llama-alt.gguf"
    assert model["startupProbe"]["httpGet"] == {"path": "/health", "port": sandbox.MODEL_PORT}
    assert (
        "limits" not in model["resources"] or "nvidia.com/gpu" not in model["resources"]["limits"]
    )


def test_vllm_gets_gpus_shared_memory_and_its_flags() -> None:
    spec = spec_of("vllm-agent.yaml")
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    model = container(body, sandbox.MODEL_CONTAINER)
    assert model["command"] == ["vllm", "serve"]
    assert model["args"][:4] == [
        "Qwen/Qwen2.5-Coder-7B-Instruct",
        "--revision",
        "main",
        "--served-model-name",
    ]
    assert model["args"][-1] == "hermes"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    dshm = next(v for v in body["spec"]["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"]["medium"] == "Memory"
    assert any(m["mountPath"] == "/dev/shm" for m in model["volumeMounts"])  # noqa: S108


@pytest.mark.parametrize("example", ["llamacpp-agent.yaml", "vllm-agent.yaml"])
def test_the_service_reaches_the_pods_ports_by_the_names_it_targets(example: str) -> None:
    spec = spec_of(example)
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    named = {
        port["name"]: port["containerPort"]
        for c in body["spec"]["containers"]
        for port in c.get("ports", [])
    }
    targets = {p["targetPort"]: p["port"] for p in objects.service(REF)["spec"]["ports"]}
    assert targets == {"runner": sandbox.RUNNER_PORT, "model": sandbox.MODEL_PORT}
    assert {name: named.get(name) for name in targets} == targets


@pytest.mark.parametrize("example", ["llamacpp-agent.yaml", "vllm-agent.yaml"])
def test_the_model_server_is_probed_on_health_at_the_model_port(example: str) -> None:
    spec = spec_of(example)
    model = container(pod(REF, spec, SETTINGS, {"GITHUB_TOKEN": "s"}), sandbox.MODEL_CONTAINER)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert model[probe]["httpGet"] == {"path": "/health", "port": sandbox.MODEL_PORT}


def test_model_resources_are_the_agents_plus_its_gpus_as_limits() -> None:
    def resources(example: str, **model: Any) -> Any:
        spec = spec_of(example)
        spec = spec.model_copy(update={"model": spec.model.model_copy(update=model)})
        body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
        return container(body, sandbox.MODEL_CONTAINER)["resources"]

    assert resources("llamacpp-agent.yaml") == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    on_gpus = resources("llamacpp-agent.yaml", gpus=2, gpu_resource_name="amd.com/gpu")
    assert on_gpus["limits"] == {"amd.com/gpu": "2"}
    assert resources("vllm-agent.yaml")["limits"] == {"memory": "32Gi", "nvidia.com/gpu": "1"}


def test_external_engine_runs_no_model_server_and_points_at_the_endpoint() -> None:
    spec = spec_of("external-agent.yaml")
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    assert [c["name"] for c in body["spec"]["containers"]] == [sandbox.HARNESS_CONTAINER]
    env = {e["name"]: e["value"] for e in container(body, sandbox.HARNESS_CONTAINER)["env"]}
    assert env[sandbox.MODEL_URL_ENV] == "https://inference.example.com/v1"
    assert env["MODEL_API_KEY"].startswith("stub_model_api_key_")


def test_stubs_stay_stable_and_follow_the_credentials() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    first = reconcile_stubs(spec, {})
    assert reconcile_stubs(spec, first) == first
    fewer = spec.model_copy(update={"credentials": []})
    assert reconcile_stubs(fewer, first) == {}


def test_spec_hash_changes_with_the_pod_but_not_with_suspend_or_the_idle_policy() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    assert spec_hash(spec, SETTINGS) == spec_hash(
        spec.model_copy(update={"suspend": True}), SETTINGS
    )
    idle = spec_of("llamacpp-agent.yaml", lifecycle={"idleAfter": "15m"})
    assert spec_hash(spec, SETTINGS) == spec_hash(idle, SETTINGS)
    other = spec_of("llamacpp-agent.yaml", harness={"image": "paddock/harness:0.2.0"})
    assert spec_hash(spec, SETTINGS) != spec_hash(other, SETTINGS)


def test_vault_config_holds_stubs_and_file_paths_never_values() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    config = objects.vault_config(spec, {"GITHUB_TOKEN": "stub_github_token_1"})
    (credential,) = config.credentials
    assert credential.stub == "stub_github_token_1"
    assert credential.value_file == f"{sandbox.VAULT_SECRETS_DIR}/GITHUB_TOKEN"
    assert credential.hosts == ["api.github.com", "github.com", "*.githubusercontent.com"]
    assert config.egress_allow == ["pypi.org", "files.pythonhosted.org"]


def test_model_downloads_are_let_through_the_vault() -> None:
    spec = spec_of(
        "llamacpp-agent.yaml",
        model={
            "models": [
                {"name": "hf", "source": {"huggingFace": {"repo": "a/b", "file": "m.gguf"}}},
                {"name": "web", "source": {"url": "https://models.example.org/x.gguf"}},
            ],
            "default": "hf",
        },
    )
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    fetch = container(body, "model-fetch")
    assert "https://huggingface.co/a/b/resolve/main/m.gguf" in fetch["command"][-1]
    allow = objects.vault_config(spec, reconcile_stubs(spec, {})).egress_allow
    assert "models.example.org" in allow
    assert "huggingface.co" in allow


def test_network_policy_blocks_private_and_metadata_addresses() -> None:
    policy = objects.network_policy(REF, SETTINGS)["spec"]
    blocked = policy["egress"][1]["to"][0]["ipBlock"]["except"]
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert cidr in blocked
    (ingress,) = policy["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [sandbox.RUNNER_PORT, sandbox.MODEL_PORT]


def test_workspace_is_owned_only_when_it_should_go_with_the_agent() -> None:
    deleting = objects.workspace_claim(REF, spec_of("llamacpp-agent.yaml"))
    assert deleting["metadata"]["ownerReferences"][0]["uid"] == REF.uid
    assert deleting["spec"]["resources"]["requests"]["storage"] == "1Gi"
    retained = objects.workspace_claim(REF, spec_of("vllm-agent.yaml"))
    assert "ownerReferences" not in retained["metadata"]


INTERNAL_CA = pki.new_ca("internal CA").cert_pem.decode()
OPENED = OperatorSettings(
    internal_networks=["10.96.0.200/29", "fd12:3456::/48"],  # type: ignore[list-item]
    upstream_ca_bundle=INTERNAL_CA,
)


def test_internal_networks_and_upstream_cas_reach_the_vault_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = spec_of("llamacpp-agent.yaml")
    body = pod(REF, spec, OPENED, reconcile_stubs(spec, {}))
    vault = container(body, sandbox.VAULT_CONTAINER)
    for variable in vault["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    seen = VaultSettings()  # what the vault makes of its environment
    assert [str(n) for n in seen.internal_networks] == ["10.96.0.200/29", "fd12:3456::/48"]
    (ca_file,) = seen.upstream_ca_files
    mounts = {m["name"]: m["mountPath"] for m in vault["volumeMounts"]}
    assert str(ca_file.parent) == mounts["upstream-ca"]
    volume = next(v for v in body["spec"]["volumes"] if v["name"] == "upstream-ca")
    assert volume["configMap"] == {
        "name": REF.vault_config,
        "items": [{"key": ca_file.name, "path": ca_file.name}],
    }
    config = objects.vault_config_map(REF, spec, {"GITHUB_TOKEN": "s"}, b"x", OPENED)
    assert config["data"][ca_file.name] == INTERNAL_CA
    for other in body["spec"]["containers"] + body["spec"]["initContainers"]:
        if other["name"] != sandbox.VAULT_CONTAINER:
            assert "upstream-ca" not in {m["name"] for m in other.get("volumeMounts", [])}
            assert not any(e["name"].startswith("PADDOCK_VAULT_") for e in other.get("env", []))


def test_nothing_is_opened_by_default_and_upgrading_rolls_no_pod() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    body = pod(REF, spec, SETTINGS, reconcile_stubs(spec, {}))
    vault = container(body, sandbox.VAULT_CONTAINER)
    assert [e["name"] for e in vault["env"]] == ["PADDOCK_VAULT_CONFIG_FILE"]
    assert "upstream-ca" not in {v["name"] for v in body["spec"]["volumes"]}
    config = objects.vault_config_map(REF, spec, {"GITHUB_TOKEN": "s"}, b"x", SETTINGS)
    assert set(config["data"]) == {"config.json", "agent-ca.crt"}
    assert len(objects.network_policy(REF, SETTINGS)["spec"]["egress"]) == 2
    # The hash the operator of the first release wrote, from the settings it had: unchanged where
    # the Pod is (init-container mode, which that release had), so a new operator leaves those
    # Pods alone; the new default, CNI mode, rolls them into it.
    before = {
        k: v
        for k, v in INIT_CONTAINER.model_dump(mode="json").items()
        if k not in ("internal_networks", "upstream_ca_bundle", "egress_mode")
    }
    # The spec as the first release had it (spec.lifecycle came later).
    first = spec.model_dump(mode="json", exclude={"suspend", "workspace", "lifecycle"})
    material = [first, before]
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    assert spec_hash(spec, INIT_CONTAINER) == digest
    assert spec_hash(spec, SETTINGS) != digest
    opened = OPENED.model_copy(update={"egress_mode": "init-container"})
    assert spec_hash(spec, opened) != digest  # opening a network rolls the Pods into it


def test_network_policy_opens_the_internal_networks() -> None:
    egress = objects.network_policy(REF, OPENED)["spec"]["egress"]
    assert egress[2] == {
        "to": [{"ipBlock": {"cidr": "10.96.0.200/29"}}, {"ipBlock": {"cidr": "fd12:3456::/48"}}]
    }
    assert egress[1]["to"][0]["ipBlock"]["except"] == objects.network_policy_excepts(4)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"internal_networks": ["127.0.0.0/8"]}, "loopback"),
        ({"internal_networks": ["169.254.0.0/16"]}, "link-local"),
        ({"internal_networks": ["100.100.100.0/24"]}, "metadata"),
        ({"internal_networks": ["10.0.0.0/33"]}, "internal_networks"),
        ({"upstream_ca_bundle": "not a certificate"}, "PEM certificates"),
        ({"upstream_ca_bundle": INTERNAL_CA + pki.new_ca("x").key_pem.decode()}, "private key"),
    ],
)
def test_settings_refuse_what_must_never_be_opened(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        OperatorSettings(**changes)


def test_the_trust_bundle_script_stops_when_a_certificate_is_missing(tmp_path: Path) -> None:
    """The egress init container writes the bundle first: a missing file must fail the Pod's
    start, not leave a bundle without the Agent CA (TLS errors in the harness, much later)."""
    script = trust_script()
    files = {
        SYSTEM_ROOTS: tmp_path / "roots.crt",
        f"{AGENT_CA_DIR}/{objects.AGENT_CA_FILE}": tmp_path / "agent-ca.crt",
        sandbox.CA_CERT_FILE: tmp_path / "bundle.crt",
    }
    for path, local in files.items():
        assert path in script
        script = script.replace(path, str(local))
    files[f"{AGENT_CA_DIR}/{objects.AGENT_CA_FILE}"].write_text("AGENT CA\n")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", script + "echo went on"], capture_output=True, text=True, check=False
        )

    done = run()
    assert done.returncode != 0
    assert "went on" not in done.stdout
    assert not files[sandbox.CA_CERT_FILE].exists()
    files[SYSTEM_ROOTS].write_text("PUBLIC ROOTS\n")
    done = run()
    assert done.returncode == 0, done.stderr
    assert files[sandbox.CA_CERT_FILE].read_text() == "PUBLIC ROOTS\nAGENT CA\n"


CNI = OperatorSettings(egress_mode="cni")


def test_cni_mode_pod_holds_no_privilege_and_names_the_nodes_script() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    body = pod(REF, spec, CNI, reconcile_stubs(spec, {}))
    assert body["metadata"]["annotations"][cni.ANNOTATION] == cni.annotation_value()
    init = body["spec"]["initContainers"]
    assert [c["name"] for c in init][:2] == [
        sandbox.EGRESS_CHECK_CONTAINER,
        sandbox.VAULT_CONTAINER,
    ]
    assert init[0]["command"][-1].endswith("exec paddock egress-check --port 15006\n")
    for c in init + body["spec"]["containers"]:
        ctx = c["securityContext"]
        assert ctx["runAsNonRoot"] is True, c["name"]
        assert ctx["runAsUser"] != 0, c["name"]
        assert ctx["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert ctx["allowPrivilegeEscalation"] is False, c["name"]
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
    # The check runs as a user whose connections the node must redirect: never the vault's.
    assert init[0]["securityContext"]["runAsUser"] != sandbox.VAULT_UID
    assert "xtables-lock" not in {v["name"] for v in body["spec"]["volumes"]}


def test_init_container_mode_carries_no_cni_annotation() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    body = pod(REF, spec, INIT_CONTAINER, reconcile_stubs(spec, {}))
    assert cni.ANNOTATION not in body["metadata"]["annotations"]


def test_egress_mode_replaces_pods_only_when_changed() -> None:
    spec = spec_of("llamacpp-agent.yaml")
    assert SETTINGS.egress_mode == "cni"  # the default
    assert spec_hash(spec, CNI) == spec_hash(spec, SETTINGS)
    assert spec_hash(spec, INIT_CONTAINER) != spec_hash(spec, SETTINGS)
