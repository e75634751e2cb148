"""Every lifecycle path of an Agent, with the operator on a real API server (kubelet played)."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kopf.testing import KopfRunner

from paddock import sandbox
from paddock.kubeobj import Obj, timestamp
from paddock_operator.reconcile import EGRESS_BACKOFF_FIRST
from paddock_testing.cluster import Cluster, wait_for
from paddock_testing.metrics import Samples, samples

pytestmark = pytest.mark.apiserver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ENGINES = {
    "llamacpp": "llamacpp-agent.yaml",
    "vllm": "vllm-agent.yaml",
    "external": "external-agent.yaml",
}


def example(name: str) -> list[Obj]:
    """The documents of an example file."""
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def example_agent(name: str) -> Obj:
    return next(d for d in example(name) if d["kind"] == "Agent")


REAL = {"github": "ghp_REAL_github_value_7f3a", "inference": "sk-REAL-inference-value-91c2"}


def secrets(cluster: Cluster) -> list[Obj]:
    return [
        cluster.secret("github", token=REAL["github"]),
        cluster.secret("inference", **{"api-key": REAL["inference"]}),
    ]


def env_of(pod: Obj, container: str) -> dict[str, str]:
    everything = pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
    found = next(c for c in everything if c["name"] == container)
    return {e["name"]: e.get("value", "") for e in found.get("env", [])}


def ready_agent(cluster: Cluster, engine: str) -> tuple[str, Obj]:
    """Apply an engine's example with its Secrets; play the kubelet until the Agent is Ready."""
    agent = example_agent(ENGINES[engine])
    name = agent["metadata"]["name"]
    cluster.apply(*secrets(cluster), agent)
    pod = cluster.wait_pod(name)
    cluster.play_kubelet(name)
    wait_for(lambda: cluster.agent_status(name).get("phase") == "Ready", f"{name} Ready")
    return name, pod


@pytest.mark.parametrize("engine", list(ENGINES))
def test_agent_gets_its_objects_and_becomes_ready(
    operator: KopfRunner, cluster: Cluster, engine: str
) -> None:
    name, pod = ready_agent(cluster, engine)
    agent = cluster.get("agent", name)
    assert agent is not None
    uid = agent["metadata"]["uid"]
    for kind, obj_name in [
        ("pod", f"{name}-sandbox"),
        ("service", name),
        ("networkpolicy", f"{name}-sandbox"),
        ("secret", f"{name}-ca"),
        ("configmap", f"{name}-vault"),
    ]:
        obj = cluster.get(kind, obj_name)
        assert obj is not None, f"{kind}/{obj_name} missing"
        owners = obj["metadata"].get("ownerReferences", [])
        assert [o["uid"] for o in owners] == [uid], f"{kind}/{obj_name} not owned by the Agent"
    assert cluster.get("pvc", f"{name}-workspace") is not None
    status = cluster.agent_status(name)
    assert status["podName"] == f"{name}-sandbox"
    assert status["endpoint"] == f"http://{name}.{cluster.namespace}.svc:{sandbox.RUNNER_PORT}"
    assert status["observedGeneration"] == agent["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "CredentialsReady": "True",
        "PodScheduled": "True",
        "ModelReady": "True",
        "Ready": "True",
    }
    containers = {c["name"] for c in pod["spec"]["containers"]}
    expected = {"harness"} if engine == "external" else {"harness", "model"}
    assert containers == expected
    row = cluster.kubectl("get", "agents").splitlines()[1].split()
    assert row[:5] == [name, "Ready", engine, agent["spec"]["model"]["default"], "True"]
    events = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}")
    assert "PodCreated" in events


def created_at(cluster: Cluster, collection: str, name: str, since: str) -> int:
    """The revision at which an object was created: its ADDED event on a watch from since."""
    url = f"{collection}?watch=1&resourceVersion={since}&timeoutSeconds=1"
    for line in cluster.kubectl("get", "--raw", url).splitlines():
        event = json.loads(line)
        if event["type"] == "ADDED" and event["object"]["metadata"]["name"] == name:
            return int(event["object"]["metadata"]["resourceVersion"])
    raise AssertionError(f"no ADDED event for {name} in {collection} since {since}")


def test_no_sandbox_pod_exists_before_its_network_policy(
    operator: KopfRunner, cluster: Cluster
) -> None:
    """Else the runner would be open to every Pod in the cluster until the policy came."""
    cluster.apply(*secrets(cluster))  # first: a reconcile that waits on them makes no Pod
    since = json.loads(cluster.kubectl("get", "secrets", "-o", "json"))["metadata"][
        "resourceVersion"
    ]
    agent = example_agent(ENGINES["llamacpp"])
    name = agent["metadata"]["name"]
    cluster.apply(agent)
    cluster.wait_pod(name)
    ns = f"/namespaces/{cluster.namespace}"
    policy = created_at(
        cluster, f"/apis/networking.k8s.io/v1{ns}/networkpolicies", f"{name}-sandbox", since
    )
    pod = created_at(cluster, f"/api/v1{ns}/pods", f"{name}-sandbox", since)
    assert policy < pod, f"the Pod (revision {pod}) came before its NetworkPolicy ({policy})"


def _exposed(pod: Obj, container: Obj) -> set[str]:
    """Every Secret a container can read: env, envFrom, and mounted volumes."""
    names: set[str] = set()
    for env in container.get("env", []):
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
    names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


@pytest.mark.parametrize("engine", list(ENGINES))
def test_no_real_secret_or_ca_key_reaches_harness_or_model(
    operator: KopfRunner, cluster: Cluster, engine: str
) -> None:
    name, _ = ready_agent(cluster, engine)
    pod = cluster.pod(name)
    assert pod is not None
    ca_key = base64.b64decode(
        (cluster.get("secret", f"{name}-ca") or {})["data"]["tls.key"]
    ).decode()
    forbidden_secrets = {"github", "inference", f"{name}-ca"}
    for container in pod["spec"]["containers"]:
        text = json.dumps(container)
        for value in [*REAL.values(), ca_key.strip().splitlines()[1]]:
            assert value not in text, f"{container['name']} holds a real value"
        assert not _exposed(pod, container) & forbidden_secrets, container["name"]
    vault = next(c for c in pod["spec"]["initContainers"] if c["name"] == "vault")
    assert f"{name}-ca" in _exposed(pod, vault)
    harness_env = env_of(pod, "harness")
    credential = "MODEL_API_KEY" if engine == "external" else "GITHUB_TOKEN"
    assert harness_env[credential].startswith(f"stub_{credential.lower()}_")
    config = json.loads((cluster.get("configmap", f"{name}-vault") or {})["data"]["config.json"])
    assert config["credentials"][0]["stub"] == harness_env[credential]
    assert REAL["github"] not in json.dumps(config)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_deleted_pod_comes_back_with_the_same_stubs(
    operator: KopfRunner, cluster: Cluster, engine: str
) -> None:
    name, pod = ready_agent(cluster, engine)
    cluster.kubectl("delete", "pod", f"{name}-sandbox", "--grace-period=0", "--force")
    again = cluster.wait_pod(name, other_than=pod["metadata"]["uid"])
    assert env_of(again, "harness") == env_of(pod, "harness")
    wait_for(lambda: cluster.agent_status(name).get("restarts") == 1, "restarts to count 1")


def test_failed_pod_is_replaced(operator: KopfRunner, cluster: Cluster) -> None:
    name, pod = ready_agent(cluster, "llamacpp")
    cluster.play_kubelet(name, ready=False, phase="Failed")
    again = cluster.wait_pod(name, other_than=pod["metadata"]["uid"])
    assert again["metadata"]["name"] == f"{name}-sandbox"
    wait_for(lambda: cluster.agent_status(name).get("restarts") == 1, "restarts to count 1")


def test_a_pod_the_node_did_not_redirect_is_replaced_and_then_less_often(
    operator: KopfRunner, cluster: Cluster
) -> None:
    """CNI mode: a Pod whose egress-check failed (the node's plugin missing when it started)
    never recovers in its network namespace; the operator replaces it, at once the first time,
    then only after a back-off, so a node without the plugin is not flooded with Pods."""
    name = example_agent(ENGINES["llamacpp"])["metadata"]["name"]
    cluster.apply(*secrets(cluster), example_agent(ENGINES["llamacpp"]))
    first = cluster.wait_pod(name)
    assert first["spec"]["initContainers"][0]["name"] == sandbox.EGRESS_CHECK_CONTAINER
    cluster.play_egress_failure(name)
    second = cluster.wait_pod(name, other_than=first["metadata"]["uid"])
    wait_for(lambda: cluster.warnings(name).get("EgressNotSetUp") == 1, "a Warning on the Agent")
    wait_for(lambda: cluster.agent_status(name).get("restarts") == 1, "restarts to count 1")

    cluster.play_egress_failure(name)
    wait_for(
        lambda: cluster.condition(name, "Ready").get("reason") == "EgressNotSetUp",
        "the Ready condition to say why",
    )
    third = cluster.wait_pod(name, other_than=second["metadata"]["uid"])
    waited = seconds_between(second, third)
    assert waited >= EGRESS_BACKOFF_FIRST - 1, waited  # creation times are whole seconds

    # Once a Pod's check passes, the next failure is replaced at once again (without the reset,
    # this one would wait twice the first back-off from the Pod's creation).
    cluster.play_kubelet(name)
    wait_for(lambda: cluster.agent_status(name).get("phase") == "Ready", f"{name} Ready")
    cluster.play_egress_failure(name)
    started = time.monotonic()
    cluster.wait_pod(name, other_than=third["metadata"]["uid"])
    assert time.monotonic() - started < EGRESS_BACKOFF_FIRST


def seconds_between(earlier: Obj, later: Obj) -> float:
    created = [timestamp(p["metadata"]["creationTimestamp"]) for p in (earlier, later)]
    return (created[1] - created[0]).total_seconds()


def test_spec_change_rolls_the_pod(operator: KopfRunner, cluster: Cluster) -> None:
    name, pod = ready_agent(cluster, "llamacpp")
    patch = {"spec": {"harness": {"image": "paddock/harness:0.2.0"}}}
    cluster.kubectl("patch", "agent", name, "--type=merge", "-p", json.dumps(patch))
    again = cluster.wait_pod(name, other_than=pod["metadata"]["uid"])
    harness = next(c for c in again["spec"]["containers"] if c["name"] == "harness")
    assert harness["image"] == "paddock/harness:0.2.0"
    assert env_of(again, "harness") == env_of(pod, "harness")
    assert cluster.agent_status(name).get("restarts", 0) == 0


def test_suspend_keeps_the_workspace_and_resume_brings_the_pod_back(
    operator: KopfRunner, cluster: Cluster
) -> None:
    name, pod = ready_agent(cluster, "llamacpp")
    claim = cluster.get("pvc", f"{name}-workspace")
    assert claim is not None
    cluster.kubectl("patch", "agent", name, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: cluster.pod(name) is None, "the Pod to go")
    wait_for(lambda: cluster.agent_status(name).get("phase") == "Suspended", "phase Suspended")
    assert (cluster.get("pvc", f"{name}-workspace") or {})["metadata"]["uid"] == claim["metadata"][
        "uid"
    ]
    cluster.kubectl("patch", "agent", name, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    again = cluster.wait_pod(name, other_than=pod["metadata"]["uid"])
    assert env_of(again, "harness") == env_of(pod, "harness")
    assert (cluster.get("pvc", f"{name}-workspace") or {})["metadata"]["uid"] == claim["metadata"][
        "uid"
    ]
    assert cluster.agent_status(name).get("restarts", 0) == 0


def test_missing_secret_is_reported_and_recovers(operator: KopfRunner, cluster: Cluster) -> None:
    agent = example_agent(ENGINES["llamacpp"])
    name = agent["metadata"]["name"]
    cluster.apply(agent)

    def reported() -> Obj:
        found = cluster.condition(name, "CredentialsReady")
        return found if found.get("status") == "False" else {}

    condition = wait_for(reported, "CredentialsReady=False")
    assert condition["reason"] == "SecretNotFound"
    assert "Secret github" in condition["message"]
    assert cluster.pod(name) is None
    # Time passing is the point: three more retries (PADDOCK_OPERATOR_RETRY_DELAY=1) happen in it,
    # and they must add no Event (one, not four). There is no condition to wait for.
    time.sleep(3.5)
    assert cluster.warnings(name) == {"SecretNotFound": 1}
    cluster.apply(cluster.secret("github", wrong_key="x"))
    wait_for(
        lambda: cluster.condition(name, "CredentialsReady").get("reason") == "SecretKeyNotFound",
        "SecretKeyNotFound",
    )
    cluster.apply(cluster.secret("github", token=REAL["github"]))
    cluster.wait_pod(name)
    wait_for(
        lambda: cluster.condition(name, "CredentialsReady").get("status") == "True",
        "CredentialsReady=True",
    )


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deleting_the_agent_removes_what_it_owns(
    operator: KopfRunner, cluster: Cluster, policy: str
) -> None:
    agent = example_agent(ENGINES["llamacpp"])
    agent["spec"]["workspace"]["deletionPolicy"] = policy
    name = agent["metadata"]["name"]
    cluster.apply(*secrets(cluster), agent)
    cluster.wait_pod(name)
    cluster.kubectl("delete", "agent", name, "--wait=false")
    for kind, obj in [
        ("pod", f"{name}-sandbox"),
        ("service", name),
        ("secret", f"{name}-ca"),
        ("configmap", f"{name}-vault"),
        ("networkpolicy", f"{name}-sandbox"),
    ]:
        wait_for(lambda kind=kind, obj=obj: cluster.get(kind, obj) is None, f"{kind}/{obj} gone")
    if policy == "Delete":
        wait_for(lambda: cluster.get("pvc", f"{name}-workspace") is None, "the workspace gone")
    else:
        assert cluster.get("pvc", f"{name}-workspace") is not None
    assert cluster.get("secret", "github") is not None, "the user's Secret must stay"


def test_all_examples_reconcile(operator: KopfRunner, cluster: Cluster) -> None:
    for name in ENGINES.values():
        cluster.apply(*secrets(cluster), *example(name))
    for name in ("coder", "coder-gpu", "coder-external"):
        cluster.wait_pod(name)


def test_the_running_operator_serves_what_it_did(operator: KopfRunner, cluster: Cluster) -> None:
    url = f"http://127.0.0.1:{os.environ['PADDOCK_OPERATOR_METRICS_PORT']}/metrics"
    name, _ = ready_agent(cluster, "llamacpp")

    def scraped() -> Samples | None:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            found = samples(response.read().decode())
        started = found.get(("paddock_operator_sandbox_start_seconds_count", ()), 0)
        return found if started >= 1 else None

    found = wait_for(scraped, "the sandbox's start in the operator's metrics")
    assert found["paddock_operator_agents", (("phase", "Ready"),)] >= 1
    assert found["paddock_operator_reconcile_duration_seconds_count", (("outcome", "ok"),)] >= 1
    created = (("code", "2xx"), ("resource", "pods"), ("verb", "post"))
    assert found["paddock_operator_api_request_duration_seconds_count", created] >= 1
    assert cluster.agent_status(name)["phase"] == "Ready"
