"""The Agent API as a user meets it: kubectl against a real kube-apiserver with the chart's CRD."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddock.kubeobj import Obj
from paddock_testing.apiserver import ApiServer, ApiServerError
from paddock_testing.wait import wait_for

pytestmark = pytest.mark.apiserver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_agent(name: str) -> Obj:
    """The Agent document of an example file."""
    docs = yaml.safe_load_all((EXAMPLES / name).read_text())
    return next(d for d in docs if d and d.get("kind") == "Agent")


def apply(server: ApiServer, namespace: str, obj: Obj) -> tuple[int, str]:
    """kubectl apply one object; return the exit code and what kubectl printed."""
    result = server.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_applies(apiserver: ApiServer, namespace: str, example: str) -> None:
    result = apiserver.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / example), check=False)
    assert result.returncode == 0, result.stderr
    assert "agent.paddock.dev/" in result.stdout


def test_defaults_are_filled_in_by_the_api_server(apiserver: ApiServer, namespace: str) -> None:
    minimal = {
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "minimal"},
        "spec": {
            "harness": {"image": "paddock/harness:0.1.0"},
            "model": {
                "models": [
                    {"name": "m", "source": {"pvc": {"claimName": "models", "path": "m.gguf"}}}
                ],
                "default": "m",
            },
        },
    }
    code, out = apply(apiserver, namespace, minimal)
    assert code == 0, out
    got = json.loads(
        apiserver.kubectl("get", "agent", "minimal", "-n", namespace, "-o", "json").stdout
    )
    spec = got["spec"]
    assert spec["model"]["engine"] == "llamacpp"
    assert spec["model"]["gpuResourceName"] == "nvidia.com/gpu"
    assert spec["harness"]["workingDir"] == "/workspace"
    assert spec["workspace"] == {"size": "10Gi", "deletionPolicy": "Delete"}
    assert spec["suspend"] is False
    assert spec["credentials"] == []
    assert spec["egress"] == {"allow": []}


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    """A mutation that sets a dotted path (list indexes as numbers) to value, or deletes it."""

    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        key_: Any = int(last) if isinstance(node, list) else last
        if value is _DELETE:
            del node[key_]
        else:
            node[key_] = value

    return mutate


_DELETE = object()

EXTERNAL = "external-agent.yaml"
LLAMA = "llamacpp-agent.yaml"
VLLM = "vllm-agent.yaml"

# (example it starts from, mutations, fragments the API server's message must hold)
INVALID: dict[str, tuple[str, list[Callable[[Obj], None]], list[str]]] = {
    "unknown engine": (
        LLAMA,
        [_set("spec.model.engine", "gpt")],
        ['spec.model.engine: Unsupported value: "gpt"', '"llamacpp", "vllm", "external"'],
    ),
    "missing harness image": (
        LLAMA,
        [_set("spec.harness.image", _DELETE)],
        ["spec.harness.image: Required value"],
    ),
    "vllm without a model": (
        VLLM,
        [_set("spec.model.models", [])],
        ["spec.model.models", "at least 1 items"],
    ),
    "credential without hosts": (
        LLAMA,
        [_set("spec.credentials.0.hosts", _DELETE)],
        ["spec.credentials[0].hosts: Required value"],
    ),
    "reserved name for a credential": (
        LLAMA,
        [_set("spec.credentials.0.name", "SSL_CERT_FILE")],
        ["spec.credentials[0].name", "must not be one of the variables paddock sets itself"],
    ),
    "credential with no host in its list": (
        LLAMA,
        [_set("spec.credentials.0.hosts", [])],
        ["spec.credentials[0].hosts", "at least 1 items"],
    ),
    "host pattern '*'": (
        LLAMA,
        [_set("spec.credentials.0.hosts", ["*"])],
        ["spec.credentials[0].hosts[0]", "must be a lowercase host name"],
    ),
    "host with a scheme": (
        LLAMA,
        [_set("spec.credentials.0.hosts", ["http://x"])],
        ["spec.credentials[0].hosts[0]", "no scheme, port, path"],
    ),
    "host with a port": (
        LLAMA,
        [_set("spec.credentials.0.hosts", ["api.github.com:443"])],
        ["spec.credentials[0].hosts[0]", "must be a lowercase host name"],
    ),
    "wildcard over a whole top-level domain": (
        LLAMA,
        [_set("spec.egress.allow", ["*.com"])],
        ["spec.egress.allow[0]", "must be a lowercase host name"],
    ),
    "env name 1BAD": (
        LLAMA,
        [_set("spec.harness.env", [{"name": "1BAD", "value": "x"}])],
        ["spec.harness.env[0].name", "must be an environment variable name"],
    ),
    "negative storage size": (
        LLAMA,
        [_set("spec.workspace.size", "-1Gi")],
        ["spec.workspace.size", "must be a positive storage quantity"],
    ),
    "malformed storage size": (
        LLAMA,
        [_set("spec.workspace.size", "ten gigs")],
        ["spec.workspace.size", "must be a positive storage quantity"],
    ),
    "duplicate credential names": (
        LLAMA,
        [
            lambda o: o["spec"]["credentials"].append(
                copy.deepcopy(o["spec"]["credentials"][0]) | {"hosts": ["gitlab.com"]}
            )
        ],
        ["spec.credentials[1]: Duplicate value", "GITHUB_TOKEN"],
    ),
    "external engine without a base URL": (
        EXTERNAL,
        [_set("spec.model.external.baseURL", _DELETE)],
        ["spec.model.external.baseURL: Required value"],
    ),
    "external engine without its external block": (
        EXTERNAL,
        [_set("spec.model.external", _DELETE)],
        ["spec.model", "spec.model.external (baseURL and credential) is required"],
    ),
    "external base URL over plain http": (
        EXTERNAL,
        [_set("spec.model.external.baseURL", "http://inference.example.com/v1")],
        ["spec.model.external.baseURL", "must be an absolute https:// URL"],
    ),
    "external credential that is not declared": (
        EXTERNAL,
        [_set("spec.model.external.credential", "OTHER_KEY")],
        ["spec.model.external.credential", "must be the name of one of spec.credentials"],
    ),
    "external base URL on a host its credential may not reach": (
        EXTERNAL,
        [_set("spec.model.external.baseURL", "https://evil.example.net/v1")],
        ["spec.model.external.baseURL", "must be one of its credential's hosts"],
    ),
    "default model that is not served": (
        LLAMA,
        [_set("spec.model.default", "gpt-4")],
        ["spec.model.default", "must be the name of one of spec.model.models"],
    ),
    "model without a source": (
        LLAMA,
        [_set("spec.model.models.0.source", _DELETE)],
        ["spec.model.models", "needs a source when engine is llamacpp or vllm"],
    ),
    "model source with two kinds": (
        LLAMA,
        [_set("spec.model.models.0.source.url", "https://example.com/m.gguf")],
        ["spec.model.models[0].source", "must set exactly one of pvc, url, huggingFace"],
    ),
    "model path escaping its volume": (
        LLAMA,
        [_set("spec.model.models.0.source.pvc.path", "../../etc/shadow")],
        ["spec.model.models[0].source.pvc.path", "must not contain '..'"],
    ),
    "vllm with two models": (
        VLLM,
        [
            lambda o: o["spec"]["model"]["models"].append(
                {**o["spec"]["model"]["models"][0], "name": "b"}
            )
        ],
        ["spec.model.models", "vllm serves exactly one model per Agent"],
    ),
    "vllm with zero GPUs": (
        VLLM,
        [_set("spec.model.gpus", 0)],
        ["spec.model.gpus", "vllm needs at least one GPU"],
    ),
    "engine args that take over the port": (
        LLAMA,
        [_set("spec.model.args", ["--port=9000"])],
        ["spec.model.args", "must not set --host, --port"],
    ),
    "env that shadows a credential": (
        LLAMA,
        [_set("spec.harness.env", [{"name": "GITHUB_TOKEN", "value": "ghp_real"}])],
        ["spec.harness.env", "must not set a variable that spec.credentials provides"],
    ),
    "env that overrides the proxy": (
        LLAMA,
        [_set("spec.harness.env", [{"name": "HTTPS_PROXY", "value": "http://elsewhere:3128"}])],
        ["spec.harness.env[0].name", "must not be one of the variables paddock sets itself"],
    ),
    "injection format without the value": (
        EXTERNAL,
        [_set("spec.credentials.0.injection.format", "Bearer")],
        ["spec.credentials[0].injection.format", "must contain {value}"],
    ),
    "unknown deletion policy": (
        LLAMA,
        [_set("spec.workspace.deletionPolicy", "Archive")],
        ['spec.workspace.deletionPolicy: Unsupported value: "Archive"', '"Delete", "Retain"'],
    ),
    "idle policy that is not a duration": (
        LLAMA,
        [_set("spec.lifecycle", {"idleAfter": "15 minutes"})],
        ["spec.lifecycle.idleAfter", "must be a duration such as 15m, 1h30m or 90s"],
    ),
    "idle policy shorter than the shortest supported": (
        LLAMA,
        [_set("spec.lifecycle", {"idleAfter": "9s"})],
        ["spec.lifecycle.idleAfter must be at least 10s"],
    ),
    "name too long for the Pod it becomes": (
        LLAMA,
        [_set("metadata.name", "a" * 53)],
        ["metadata.name must be a DNS label of at most 52 characters"],
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_agent_is_rejected_naming_the_field(
    apiserver: ApiServer, namespace: str, case: str
) -> None:
    example, mutations, fragments = INVALID[case]
    agent = load_agent(example)
    for mutate in mutations:
        mutate(agent)
    code, out = apply(apiserver, namespace, agent)
    assert code != 0, f"{case}: accepted, but should have been rejected:\n{out}"
    assert f'The Agent "{agent["metadata"]["name"]}" is invalid' in out
    assert "evaluating rule" not in out, f"{case}: a rule failed to evaluate:\n{out}"
    for fragment in fragments:
        assert fragment in out, f"{case}: {fragment!r} not in:\n{out}"


def test_storage_class_cannot_change(apiserver: ApiServer, namespace: str) -> None:
    agent = load_agent(LLAMA)
    agent["spec"]["workspace"]["storageClassName"] = "fast"
    assert apply(apiserver, namespace, agent)[0] == 0
    agent["spec"]["workspace"]["storageClassName"] = "slow"
    code, out = apply(apiserver, namespace, agent)
    assert code != 0
    assert "spec.workspace.storageClassName cannot be changed" in out


def test_kubectl_get_agents_prints_the_columns(apiserver: ApiServer, namespace: str) -> None:
    assert apply(apiserver, namespace, load_agent(LLAMA))[0] == 0
    status = {
        "status": {
            "phase": "Ready",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "PodReady",
                    "message": "every container is ready",
                    "lastTransitionTime": "2026-11-21T00:00:00Z",
                }
            ],
        }
    }
    apiserver.kubectl(
        "patch", "agent", "coder", "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    lines = apiserver.kubectl("get", "ag", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "ENGINE", "MODEL", "READY", "REASON", "AGE"]
    assert lines[1].split()[:6] == ["coder", "Ready", "llamacpp", "tiny", "True", "PodReady"]


def test_status_is_a_subresource(apiserver: ApiServer, namespace: str) -> None:
    agent = load_agent(LLAMA)
    agent["status"] = {"phase": "Ready"}
    assert apply(apiserver, namespace, agent)[0] == 0
    got = json.loads(
        apiserver.kubectl("get", "agent", "coder", "-n", namespace, "-o", "json").stdout
    )
    assert "phase" not in got.get("status", {}), "status written through the main resource"


def test_kubectl_explain_describes_credentials(apiserver: ApiServer) -> None:
    # The API server publishes a new CRD's OpenAPI a moment after it is established.
    result = wait_for(
        lambda: apiserver.kubectl("explain", "agent.spec.credentials"),
        "kubectl explain agent.spec.credentials",
        every=0.5,
        tolerate=(ApiServerError,),
    )
    out = " ".join(result.stdout.split())
    for text in (
        "GROUP: paddock.dev",
        "A secret the agent uses without ever seeing it",
        "hosts <[]string> -required-",
        "Hosts the credential may be sent to",
        "secretRef <Object> -required-",
        "Environment variable the agent sees, holding the stub",
        "injection <Object>",
    ):
        assert text in out, f"{text!r} not in kubectl explain output:\n{result.stdout}"
