"""Phase and conditions, as `kubectl get agents` and `kubectl describe` show them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from paddock_operator.reconcile import EGRESS_BACKOFF_MAX, egress_backoff
from paddock_operator.status import (
    Observed,
    conditions,
    egress_failed,
    egress_passed,
    phase,
    status,
)

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


def with_check(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Pending sandbox Pod whose egress-check (CNI mode) is in `state`."""
    pod = running_pod(ready=False)
    pod["status"]["phase"] = "Pending"
    check = {"name": "egress-check", "state": state, "lastState": last or {}}
    pod["status"]["initContainerStatuses"] = [check]
    return pod


FAILED = {"terminated": {"exitCode": 1}}
PASSED = {"terminated": {"exitCode": 0}}
BACKING_OFF = {"waiting": {"reason": "CrashLoopBackOff"}}


@pytest.mark.parametrize(
    ("state", "last", "failed", "passed"),
    [
        (FAILED, None, True, False),
        (BACKING_OFF, FAILED, True, False),  # between two tries: the last one tells
        (PASSED, FAILED, False, True),  # it failed once, then passed
        ({"running": {}}, None, False, False),
        ({"waiting": {"reason": "PodInitializing"}}, None, False, False),
    ],
)
def test_a_failed_egress_check_is_told_apart(
    state: dict[str, Any], last: dict[str, Any] | None, failed: bool, passed: bool
) -> None:
    pod = with_check(state, last)
    assert egress_failed(pod) is failed
    assert egress_passed(pod) is passed
    assert not egress_failed(running_pod(ready=True))  # init-container mode: no check at all


def test_the_ready_condition_says_the_node_did_not_set_up_the_egress() -> None:
    ready = by_type(seen(with_check(BACKING_OFF, FAILED)))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "EgressNotSetUp")
    assert "paddock-cni DaemonSet" in ready["message"]


def test_egress_replacements_back_off_like_the_kubelet() -> None:
    assert [egress_backoff(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert egress_backoff(50) == EGRESS_BACKOFF_MAX
