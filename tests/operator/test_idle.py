"""Idle suspend and wake: the operator's decision (unit), and the running operator on a real API
server (the kubelet and the gateway's activity writes played by the tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kopf.testing import KopfRunner

from paddock.api.agent import AgentSpec
from paddock.kubeobj import Obj, rfc3339, timestamp
from paddock_operator.idle import IdleState, change_counts_as_use, idle_state, wakes
from paddock_testing.agents import idle_agent, minimal_agent
from paddock_testing.cluster import Cluster, wait_for

IDLE_AFTER = 10  # seconds: the shortest the API allows, so the tests wait least
IDLE = f"{IDLE_AFTER}s"
WAIT = IDLE_AFTER + 20

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _spec(idle_after: str | None = "10s", *, suspend: bool = False) -> AgentSpec:
    body = minimal_agent("a")["spec"] | {"suspend": suspend}
    if idle_after:
        body["lifecycle"] = {"idleAfter": idle_after}
    return AgentSpec.model_validate(body)


def _ready_since(when: datetime, **extra: str) -> Obj:
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(when)}
    return {"conditions": [ready], **extra}


# --- the decision ----------------------------------------------------------------------------


@pytest.mark.unit
def test_the_idle_clock_starts_when_the_agent_is_ready() -> None:
    status = _ready_since(NOW - timedelta(seconds=4))
    assert idle_state(_spec(), status, NOW) == IdleState(check_in=6.0)
    assert idle_state(_spec(), status, NOW + timedelta(seconds=6)) == IdleState(
        suspended_at=NOW + timedelta(seconds=6)
    )


@pytest.mark.unit
def test_activity_after_ready_moves_the_deadline() -> None:
    status = _ready_since(
        NOW - timedelta(seconds=30), lastActivityTime=rfc3339(NOW - timedelta(seconds=2))
    )
    assert idle_state(_spec(), status, NOW) == IdleState(check_in=8.0)


@pytest.mark.unit
def test_an_agent_not_ready_or_without_a_policy_or_suspended_by_a_person_is_never_idle() -> None:
    long_ago = _ready_since(NOW - timedelta(hours=1))
    assert idle_state(_spec(None), long_ago, NOW) == IdleState()
    assert idle_state(_spec(suspend=True), long_ago, NOW) == IdleState()
    starting = {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "x"}]}
    assert idle_state(_spec(), starting, NOW) == IdleState()


@pytest.mark.unit
def test_only_activity_after_the_suspend_wakes() -> None:
    suspended = NOW - timedelta(minutes=5)
    before = {"idleSuspendTime": rfc3339(suspended), "lastActivityTime": rfc3339(suspended)}
    assert idle_state(_spec(), before, NOW) == IdleState(suspended_at=suspended)
    assert not wakes({"status": before})
    after = before | {"lastActivityTime": rfc3339(suspended + timedelta(milliseconds=1))}
    assert idle_state(_spec(), after, NOW) == IdleState(woken=True)
    assert wakes({"status": after})
    # A person's suspend wins over a wake; a policy removed while suspended lets it run again.
    assert idle_state(_spec(suspend=True), before, NOW) == IdleState()
    assert idle_state(_spec(None), before, NOW) == IdleState()


@pytest.mark.unit
def test_a_change_of_spec_restarts_the_idle_clock_unless_new_or_idle_suspended() -> None:
    seen = {"observedGeneration": 1}
    assert change_counts_as_use(_spec(), seen, 2)
    assert not change_counts_as_use(_spec(), seen, 1), "the generation already taken on"
    assert not change_counts_as_use(_spec(), {}, 1), "a new Agent"
    assert not change_counts_as_use(_spec(None), seen, 2), "no policy"
    assert not change_counts_as_use(_spec(), seen | {"idleSuspendTime": rfc3339(NOW)}, 2)


# --- the running operator --------------------------------------------------------------------


@pytest.fixture
def cluster_with_secret(cluster: Cluster) -> Cluster:
    cluster.apply(cluster.secret("token", v="real-token-value"))
    return cluster


@pytest.mark.apiserver
def test_an_unused_agent_is_suspended_when_its_idle_time_is_up_and_keeps_what_it_had(
    operator: KopfRunner, cluster_with_secret: Cluster
) -> None:
    cluster = cluster_with_secret
    cluster.apply(idle_agent("quiet", IDLE))
    _, ready_since = cluster.wait_ready("quiet")
    ca = cluster.get("secret", "quiet-ca")
    claim = cluster.get("pvc", "quiet-workspace")
    assert ca is not None
    assert claim is not None

    idle_for = (cluster.wait_idle_suspended("quiet", WAIT) - ready_since).total_seconds()
    # Ready's time has whole seconds; the operator's timer fires at the deadline itself.
    assert IDLE_AFTER <= idle_for < IDLE_AFTER + 2, idle_for
    wait_for(lambda: cluster.pod("quiet") is None, "the Pod to go")
    condition = cluster.condition("quiet", "Ready")
    assert (condition["status"], condition["reason"]) == ("False", "Idle")
    assert "spec.lifecycle.idleAfter" in condition["message"]
    assert "next message wakes it" in condition["message"]
    assert cluster.warnings("quiet") == {}
    table = cluster.kubectl("get", "agent", "quiet")
    assert table.split("\n")[1].split()[1::4] == ["Suspended", "Idle"], table
    # The workspace, the CA and the stubs stay: a wake gives the agent what it had.
    assert (cluster.get("secret", "quiet-ca") or {}).get("data") == ca["data"]
    assert (cluster.get("pvc", "quiet-workspace") or {})["metadata"]["uid"] == claim["metadata"][
        "uid"
    ]
    assert [e["type"] for e in cluster.events("quiet") if e["reason"] == "Idle"] == ["Normal"]


@pytest.mark.apiserver
def test_activity_puts_the_suspend_off_and_activity_after_it_wakes_the_agent(
    operator: KopfRunner, cluster_with_secret: Cluster
) -> None:
    cluster = cluster_with_secret
    cluster.apply(idle_agent("busy", IDLE))
    pod, ready_since = cluster.wait_ready("busy")
    wait_for(
        lambda: datetime.now(UTC) > ready_since + timedelta(seconds=IDLE_AFTER / 2),
        "half the idle time",
    )
    used = cluster.record_activity("busy")

    idle_for = (cluster.wait_idle_suspended("busy", WAIT) - used).total_seconds()
    assert IDLE_AFTER <= idle_for < IDLE_AFTER + 1, idle_for

    woken = cluster.record_activity("busy")
    # Waking (what the gateway tells a session): wakeTime, until the Agent is Ready.
    waking = wait_for(lambda: cluster.agent_status("busy").get("wakeTime"), "wakeTime")
    assert timestamp(waking) >= woken
    again, ready_again = cluster.wait_ready("busy", other_than=pod["metadata"]["uid"])
    status = cluster.agent_status("busy")
    assert "idleSuspendTime" not in status
    assert "wakeTime" not in status
    assert status.get("restarts", 0) == 0, "a wake is not a restart"
    assert ready_again >= woken.replace(microsecond=0)
    assert cluster.warnings("busy") == {}
    assert {"Idle", "Woken"} <= {e["reason"] for e in cluster.events("busy")}
    # The same Agent, the same stubs: the harness's environment is as it was.
    assert again["spec"]["containers"][0]["env"] == pod["spec"]["containers"][0]["env"]


@pytest.mark.apiserver
def test_a_suspend_set_by_a_person_is_not_undone_by_activity(
    operator: KopfRunner, cluster_with_secret: Cluster
) -> None:
    cluster = cluster_with_secret
    cluster.apply(idle_agent("held", IDLE, suspend=True))
    wait_for(lambda: cluster.agent_status("held").get("phase") == "Suspended", "Suspended")
    cluster.record_activity("held")
    # A change of spec makes the operator reconcile the Agent with that activity in its status.
    cluster.kubectl(
        "patch", "agent", "held", "--type=merge", "-p",
        '{"spec":{"harness":{"env":[{"name":"X","value":"1"}]}}}',
    )  # fmt: skip
    generation = (cluster.get("agent", "held") or {})["metadata"]["generation"]
    wait_for(
        lambda: cluster.agent_status("held").get("observedGeneration") == generation,
        "the operator to take the change on",
    )
    assert cluster.pod("held") is None
    assert cluster.condition("held", "Ready")["reason"] == "Suspended"


@pytest.mark.apiserver
def test_a_policy_given_to_an_agent_long_ready_counts_from_when_it_was_given(
    operator: KopfRunner, cluster_with_secret: Cluster
) -> None:
    cluster = cluster_with_secret
    cluster.apply(minimal_agent("late"))
    _, ready_since = cluster.wait_ready("late")
    wait_for(
        lambda: datetime.now(UTC) > ready_since + timedelta(seconds=IDLE_AFTER + 1),
        "longer than the idle time, with no policy",
    )
    given = datetime.now(UTC)
    cluster.kubectl(
        "patch", "agent", "late", "--type=merge", "-p",
        f'{{"spec":{{"lifecycle":{{"idleAfter":"{IDLE}"}}}}}}',
    )  # fmt: skip
    idle_for = (cluster.wait_idle_suspended("late", WAIT) - given).total_seconds()
    assert IDLE_AFTER <= idle_for < IDLE_AFTER + 1, idle_for
