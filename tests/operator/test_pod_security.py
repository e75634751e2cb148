"""The sandbox Pod against the API server's own Pod Security admission (tier 3).

A cluster admin labels the Agents' namespace `pod-security.kubernetes.io/enforce=<level>`; the
API server then refuses any Pod that does not meet it. Server-side dry runs of the Pods the
operator renders, in each mode, ask it directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from paddock.api.agent import AgentSpec
from paddock_operator.names import AgentRef
from paddock_operator.render.pod import pod
from paddock_operator.settings import OperatorSettings
from paddock_operator.stubs import reconcile_stubs
from paddock_testing.apiserver import ApiServer

pytestmark = pytest.mark.apiserver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamacpp-agent.yaml"


def spec_of_example() -> AgentSpec:
    body = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "Agent")
    return AgentSpec.model_validate(body["spec"])


def _admitted(apiserver: ApiServer, namespace: str, level: str, settings: OperatorSettings) -> str:
    """'' when the namespace's level admits the sandbox Pod, else the API server's refusal."""
    apiserver.kubectl(
        "label",
        "namespace",
        namespace,
        f"pod-security.kubernetes.io/enforce={level}",
        "--overwrite",
    )
    spec = spec_of_example()
    body = pod(AgentRef("coder", namespace, "u-1"), spec, settings, reconcile_stubs(spec, {}))
    result = apiserver.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False
    )
    return "" if result.returncode == 0 else result.stderr


def test_cni_mode_sandbox_passes_restricted(apiserver: ApiServer, namespace: str) -> None:
    assert _admitted(apiserver, namespace, "restricted", OperatorSettings(egress_mode="cni")) == ""


def test_init_container_mode_needs_privileged(apiserver: ApiServer, namespace: str) -> None:
    settings = OperatorSettings(egress_mode="init-container")
    for level in ("restricted", "baseline"):
        refusal = _admitted(apiserver, namespace, level, settings)
        assert "NET_ADMIN" in refusal, refusal
    assert _admitted(apiserver, namespace, "privileged", settings) == ""
