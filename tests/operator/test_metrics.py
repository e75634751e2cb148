"""The operator's /metrics: names, label sets that stay bounded, and what a scrape shows."""

from __future__ import annotations

import pytest

from paddock_operator.memory import Memory
from paddock_operator.metrics import OperatorMetrics, code_class, resource_of
from paddock_operator.names import AgentRef
from paddock_testing.metrics import samples


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("/api/v1/namespaces/ns/pods/coder-sandbox", "pods"),
        ("/api/v1/namespaces/ns/pods/coder-sandbox/status", "pods/status"),
        ("/apis/paddock.dev/v1alpha1/namespaces/ns/agents/coder/status", "agents/status"),
        (
            "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies?fieldManager=x",
            "networkpolicies",
        ),
        ("/api/v1/namespaces/ns/events", "events"),
        ("/apis/paddock.dev/v1alpha1/agents", "agents"),
        ("/api/v1/namespaces/ns", "namespaces"),
    ],
)
def test_requests_are_labelled_by_resource_never_by_name(url: str, resource: str) -> None:
    assert resource_of(url) == resource


@pytest.mark.unit
def test_what_a_scrape_says_and_an_agents_identity_only_in_its_phase() -> None:
    metrics, memory = OperatorMetrics(), Memory()
    metrics.count_phases(memory.phases)
    for name, phase in (("coder", "Ready"), ("other", "Starting"), ("other", "Ready")):
        memory.of(AgentRef(name, "ns", f"uid-{name}", 1)).phase = phase
    gone = AgentRef("gone", "ns", "uid-3", 1)
    memory.of(gone).phase = "Failed"
    memory.forget(gone.key)
    metrics.api_request("PATCH", "/api/v1/namespaces/ns/pods/coder-sandbox", 200, 0.01)
    metrics.api_request("GET", "/api/v1/namespaces/ns/secrets/github", 0, 0.5)
    metrics.pod_ready("2026-12-07T10:00:00Z", "2026-12-07T10:00:07Z")
    metrics.pod_ready("2026-12-07T10:00:09Z", "2026-12-07T10:00:00Z")  # clock went back: ignored
    metrics.replaced.labels("EgressNotSetUp").inc()
    text = metrics.text().decode()
    found = samples(text)
    assert found["paddock_operator_agents", (("phase", "Ready"),)] == 2
    assert found["paddock_operator_agents", (("phase", "Failed"),)] == 0
    coder = (("agent", "coder"), ("namespace", "ns"))
    assert found["paddock_operator_agent_phase", (*coder, ("phase", "Ready"))] == 1
    assert found["paddock_operator_agent_phase", (*coder, ("phase", "Starting"))] == 0
    assert not any(("agent", "gone") in labels for _, labels in found), "a forgotten Agent"
    assert found["paddock_operator_sandbox_start_seconds_count", ()] == 1
    assert found["paddock_operator_sandbox_start_seconds_sum", ()] == 7
    key = (("code", "error"), ("resource", "secrets"), ("verb", "get"))
    assert found["paddock_operator_api_request_duration_seconds_count", key] == 1
    assert found["paddock_operator_sandbox_pods_replaced_total", (("reason", "EgressNotSetUp"),)]
    elsewhere = "\n".join(
        line for line in text.splitlines() if not line.startswith("paddock_operator_agent_phase{")
    )
    for name in ("coder", "other", "github", "coder-sandbox", "uid-coder", '"ns"'):
        assert name not in elsewhere
    assert [code_class(s) for s in (200, 404, 503, 0)] == ["2xx", "4xx", "5xx", "error"]
