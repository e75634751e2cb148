"""Tier 4: CNI mode (the default) on the kind cluster, as a cluster admin would try it.

The node's paddock-egress plugin sets up each sandbox's redirect before any of its containers
runs. Taken away (its DaemonSet off the node), a new sandbox must not start, and no harness process
may ever run; brought back, the operator replaces the stuck Pod and the Agent becomes Ready. A
container the kubelet restarts stays in the same network namespace, rules and all.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from paddock import sandbox
from paddock.kubeobj import Obj
from paddock_operator.status import container_status, egress_failed
from paddock_testing.agents import external_agent
from paddock_testing.kind import CLUSTER, Kind, plain_pod, wait_until

pytestmark = pytest.mark.cluster

DAEMONSET = "paddock-cni"
CNI_NAMESPACE = "kube-system"
NODE = f"{CLUSTER}-control-plane"
CHAINED = "/etc/cni/net.d/00-paddock-egress.conflist"
AWAY = {"spec": {"template": {"spec": {"nodeSelector": {"paddock.dev/e2e-no-such-node": "true"}}}}}
BACK = {"spec": {"template": {"spec": {"nodeSelector": None}}}}


def node_has_the_plugin() -> bool:
    done = subprocess.run(
        ["docker", "exec", NODE, "test", "-f", CHAINED], capture_output=True, check=False
    )
    return done.returncode == 0


def set_plugin(kind: Kind, *, present: bool) -> None:
    """Put the installer on the node or take it off, and wait until the node's CNI chain says so."""
    patch = json.dumps(BACK if present else AWAY)
    kind.kubectl(
        "patch", "daemonset", DAEMONSET, "--type=merge", "-p", patch, namespace=CNI_NAMESPACE
    )
    if present:
        kind.kubectl(
            "rollout", "status", f"daemonset/{DAEMONSET}", "--timeout=180s",
            namespace=CNI_NAMESPACE,
        )  # fmt: skip
    wait_until(
        lambda: node_has_the_plugin() == present or None,
        f"the plugin {'in' if present else 'out of'} the node's CNI chain",
        120,
    )


def status_of(pod: Obj, container: str) -> Obj:
    return container_status(pod, container) or {}


def never_ran(pod: Obj, container: str) -> bool:
    """Whether the container has never started in this Pod (no current or last run)."""
    entry = status_of(pod, container)
    state, last = entry.get("state") or {}, entry.get("lastState") or {}
    return not entry.get("restartCount") and not set(state) - {"waiting"} and not last


def redirected(kind: Kind, namespace: str, pod: str) -> bool:
    """Whether a connection from the harness that ignores the proxy lands on the vault: TCP to
    TEST-NET-1, which nothing real answers, connects only when the redirect takes it to the vault
    (which then refuses it)."""
    done = kind.kubectl(
        "exec", pod, "-c", sandbox.HARNESS_CONTAINER, "--", "curl", "-sv", "--max-time", "5",
        "--noproxy", "*", "http://192.0.2.1:9/", namespace=namespace, check=False,
    )  # fmt: skip
    return "Connected to 192.0.2.1" in done.stderr


def other_pods_have_networking(kind: Kind, namespace: str) -> bool:
    """Whether a plain Pod (no sandbox) starts and reaches the API server's Service by name."""
    command = [
        "curl",
        "-sk",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "https://kubernetes.default.svc/healthz",
    ]
    probe = plain_pod("plain", command)
    kind.apply(probe, namespace=namespace)
    phase = kind.finished("plain", namespace)
    kind.kubectl("delete", "pod", "plain", "--wait=false", namespace=namespace)
    return phase == "Succeeded"


@pytest.fixture
def restricted(kind: Kind, namespace: str) -> str:
    """The test namespace, enforcing the `restricted` Pod Security Standard."""
    kind.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    return namespace


@pytest.fixture
def plugin_back(kind: Kind) -> Iterator[None]:
    """Whatever the test does to the plugin, it is on the node again afterwards."""
    yield
    set_plugin(kind, present=True)


def test_without_the_plugin_no_sandbox_starts_and_with_it_back_the_agent_is_ready(
    kind: Kind, restricted: str, plugin_back: None
) -> None:
    name = f"closed-{uuid.uuid4().hex[:6]}"
    set_plugin(kind, present=False)
    kind.apply(*external_agent(name), namespace=restricted)

    def stuck() -> Obj | None:
        return next((p for p in kind.sandbox_pods(restricted, name) if egress_failed(p)), None)

    pod = wait_until(stuck, "a sandbox Pod whose egress-check failed", 180)
    # Fail closed: nothing after the check ever ran, not the vault, not the harness.
    for container in (sandbox.VAULT_CONTAINER, sandbox.HARNESS_CONTAINER):
        assert never_ran(pod, container), status_of(pod, container)
    said = "".join(
        kind.kubectl(
            "logs", pod["metadata"]["name"], "-c", sandbox.EGRESS_CHECK_CONTAINER, *previous,
            namespace=restricted, check=False,
        ).stdout
        for previous in ((), ("--previous",))
    )  # fmt: skip
    assert "did not reach port 15006" in said, said
    agent = kind.get("agent", name, restricted) or {}
    assert agent["status"]["phase"] != "Ready"
    # Meanwhile every other Pod starts with the node's own network, as after `helm uninstall`.
    assert other_pods_have_networking(kind, restricted)

    set_plugin(kind, present=True)
    ready = wait_until(lambda: kind.agent_ready(restricted, name), f"Agent {name} Ready", 300)
    (running,) = [
        p for p in kind.sandbox_pods(restricted, name) if not p["metadata"].get("deletionTimestamp")
    ]
    assert running["metadata"]["uid"] != pod["metadata"]["uid"]  # replaced, not recovered in place
    assert redirected(kind, restricted, running["metadata"]["name"])
    events = kind.items(
        "events",
        restricted,
        "--field-selector",
        f"involvedObject.name={name},reason=EgressNotSetUp",
    )
    assert events, "no EgressNotSetUp Event on the Agent"
    assert ready["status"]["restarts"] >= 1


def test_a_container_the_kubelet_restarts_keeps_its_redirect(kind: Kind, restricted: str) -> None:
    name = f"restart-{uuid.uuid4().hex[:6]}"
    kind.apply(*external_agent(name), namespace=restricted)
    wait_until(lambda: kind.agent_ready(restricted, name), f"Agent {name} Ready", 300)
    (pod,) = kind.sandbox_pods(restricted, name)
    pod_name = pod["metadata"]["name"]
    assert redirected(kind, restricted, pod_name)
    # The container's process ends (as a crash would) and the kubelet starts it again in the same
    # Pod: same network namespace, no CNI ADD.
    container_id = status_of(pod, sandbox.HARNESS_CONTAINER)["containerID"].split("//")[-1]
    subprocess.run(
        ["docker", "exec", NODE, "ctr", "-n", "k8s.io", "task", "kill", "-s", "SIGKILL",
         container_id],
        capture_output=True, check=True,
    )  # fmt: skip

    def restarted() -> Obj | None:
        now = kind.get("pod", pod_name, restricted) or {}
        harness = status_of(now, sandbox.HARNESS_CONTAINER)
        return now if harness.get("restartCount", 0) >= 1 and harness.get("ready") else None

    again = wait_until(restarted, "the harness container restarted and ready", 180)
    assert again["metadata"]["uid"] == pod["metadata"]["uid"]
    assert redirected(kind, restricted, pod_name)
