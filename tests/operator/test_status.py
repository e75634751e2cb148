"""Phase and conditions, as `kubectl get agents` and `kubectl describe` show them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from paddock_operator.status import Observed, conditions, phase, status

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def running_pod(
    *, ready: bool, model_ready: bool = True, phase_: str = "Running"
) -> dict[str, Any]:
    flag = "True" if ready else "False"
    return {
        "metadata": {"name": "coder-sandbox"},
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": phase_,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": flag},
            ],
            "containerStatuses": [
                {"name": "model", "ready": model_ready},
                {
                    "name": "harness",
                    "ready": ready,
                    "state": {} if ready else {"waiting": {"reason": "ContainerCreating"}},
                },
            ],
        },
    }


def seen(pod: dict[str, Any] | None, **kw: Any) -> Observed:
    base: dict[str, Any] = {
        "generation": 3,
        "suspended": False,
        "external": False,
        "pod": pod,
        "restarts": 0,
        "endpoint": "http://coder.ns.svc:7000",
        "model": "tiny",
    }
    return Observed(**(base | kw))


def by_type(observed: Observed) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions(observed, [], NOW)}


def test_ready_pod_makes_a_ready_agent() -> None:
    observed = seen(running_pod(ready=True))
    assert phase(observed) == "Ready"
    got = by_type(observed)
    assert {k: v["status"] for k, v in got.items()} == {
        "CredentialsReady": "True",
        "PodScheduled": "True",
        "ModelReady": "True",
        "Ready": "True",
    }
    assert all(c["observedGeneration"] == 3 for c in got.values())


def test_starting_pod_says_what_it_waits_for() -> None:
    observed = seen(running_pod(ready=False, model_ready=False))
    assert phase(observed) == "Starting"
    got = by_type(observed)
    assert got["ModelReady"]["reason"] == "ModelLoading"
    assert got["Ready"]["reason"] == "ContainerCreating"


def test_missing_secret_names_it() -> None:
    problem = ("SecretNotFound", "Secret github (credential GITHUB_TOKEN) not found in namespace a")
    observed = seen(None, credentials_problem=problem)
    assert phase(observed) == "Pending"
    credentials = by_type(observed)["CredentialsReady"]
    assert credentials["status"] == "False"
    assert credentials["reason"] == "SecretNotFound"
    assert "Secret github" in credentials["message"]


def test_suspended_and_failed() -> None:
    assert phase(seen(None, suspended=True)) == "Suspended"
    assert by_type(seen(None, suspended=True))["Ready"]["reason"] == "Suspended"
    assert phase(seen(running_pod(ready=False, phase_="Failed"))) == "Failed"


def test_transition_time_moves_only_when_the_status_changes() -> None:
    earlier = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "ModelReady", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ]
    got = {c["type"]: c for c in conditions(seen(running_pod(ready=True)), earlier, NOW)}
    assert got["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert got["ModelReady"]["lastTransitionTime"] == "2026-11-21T12:00:00Z"


def test_status_body_carries_pod_endpoint_and_restarts() -> None:
    body = status(seen(running_pod(ready=True), restarts=2), {}, NOW)
    assert body["podName"] == "coder-sandbox"
    assert body["endpoint"] == "http://coder.ns.svc:7000"
    assert body["restarts"] == 2
    assert body["observedGeneration"] == 3
