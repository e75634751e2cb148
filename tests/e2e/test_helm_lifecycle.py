"""Tier 4, must-show 7: `helm upgrade` and `helm uninstall` leave nothing behind but what the user
asked to keep, on the kind cluster with real Pods and real controllers.

A second release, `e2e-life` in its own namespace, so the main release `paddock` keeps running for
the other tests; its operator watches only `e2e-life-agents`. (No Agent is made there: the main
operator watches every namespace, so two operators would reconcile it.) Its cluster-scoped objects
are named after the release, so they cannot collide with the main release's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paddock_testing.kind import REPO, SYSTEM_NAMESPACE, Kind, wait_until

pytestmark = pytest.mark.cluster

RELEASE = "e2e-life"
NAMESPACE = "e2e-life-system"
AGENTS = "e2e-life-agents"
CHART = str(REPO / "charts" / "paddock")
FULLNAME = f"{RELEASE}-paddock"
CLAIM = f"data-{FULLNAME}-redis-0"
NAMESPACED = (
    "deployments,statefulsets,replicasets,pods,services,configmaps,secrets,networkpolicies,"
    "serviceaccounts,roles,rolebindings,persistentvolumeclaims,jobs"
)
# What Kubernetes itself puts in every namespace.
BUILT_IN = {"configmap/kube-root-ca.crt", "serviceaccount/default"}
MARKER = "e2e-life:kept"


def helm(kind: Kind, *args: str) -> str:
    done = kind.helm(*args, "-n", NAMESPACE, check=False)
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


# The kind node (2 CPUs) already holds the main release and the example Agent: the second release
# asks for little CPU, so that its Pods are scheduled at all.
SMALL = [
    f"--set={part}.resources.requests.cpu=10m" for part in ("operator", "gateway", "redis", "tests")
]


def install(kind: Kind, *values: str) -> None:
    """`helm install` (or upgrade) the second release, waiting for every workload to be ready."""
    helm(
        kind, "upgrade", "--install", RELEASE, CHART, "--create-namespace", "--wait",
        "--timeout=5m", "--set", f"operator.namespaces={{{AGENTS}}}", "--set", "gateway.replicas=1",
        "--set", "cni.install=false",  # the main release's installer serves the node
        *SMALL, *values,
    )  # fmt: skip


def left(kind: Kind) -> set[str]:
    """kind/name of everything in the release's namespace but what Kubernetes puts there."""
    names = kind.kubectl("get", NAMESPACED, "-o", "name", namespace=NAMESPACE).stdout.split()
    return {n.replace(".apps", "").replace(".batch", "") for n in names} - BUILT_IN


def cluster_scoped(kind: Kind) -> set[str]:
    """The release's ClusterRoles and ClusterRoleBindings, found by helm's ownership annotation."""
    found = set()
    for kind_name in ("clusterroles", "clusterrolebindings"):
        for item in kind.items(kind_name):
            annotations = item["metadata"].get("annotations") or {}
            if annotations.get("meta.helm.sh/release-name") == RELEASE:
                found.add(f"{kind_name}/{item['metadata']['name']}")
    return found


def redis(kind: Kind, *command: str) -> str:
    """redis-cli in the release's Redis Pod (the password comes from the Pod's environment)."""
    return kind.exec(NAMESPACE, f"{FULLNAME}-redis-0", "redis", "redis-cli", *command).strip()


def gateway_pods(kind: Kind) -> dict[str, str]:
    """Ready gateway Pods of the release: name -> pod-template-hash."""
    pods = kind.items(
        "pods",
        NAMESPACE,
        "-l",
        f"app.kubernetes.io/name=paddock-gateway,app.kubernetes.io/instance={RELEASE}",
    )
    return {
        p["metadata"]["name"]: p["metadata"]["labels"]["pod-template-hash"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and all(c["ready"] for c in p["status"].get("containerStatuses") or [{"ready": False}])
    }


def settles(kind: Kind, expected: set[str], timeout: float = 120) -> None:
    """Wait until the namespace holds only `expected` and no cluster-scoped object of the release
    is left; else fail showing what stayed."""
    wait_until(
        lambda: left(kind) == expected and not cluster_scoped(kind),
        f"only {sorted(expected)} left of the release",
        timeout,
        detail=lambda: f"left: {sorted(left(kind))}, cluster-wide: {sorted(cluster_scoped(kind))}",
    )


@pytest.fixture(scope="module")
def fresh(kind: Kind) -> Iterator[None]:
    """No trace of the release before the tests (a failed earlier run), nor after them."""

    def clean() -> None:
        kind.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        kind.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s", check=False)

    clean()
    yield
    clean()


def test_upgrade_and_uninstall_leave_only_the_claim_the_user_kept(kind: Kind, fresh: None) -> None:
    install(kind)
    main_operator = kind.get("clusterrole", "paddock-operator")
    assert main_operator is not None, "the main release's ClusterRole"
    assert cluster_scoped(kind) == {
        f"clusterroles/{FULLNAME}-operator", f"clusterroles/{FULLNAME}-gateway",
        f"clusterrolebindings/{FULLNAME}-operator", f"clusterrolebindings/{FULLNAME}-gateway",
    }  # fmt: skip
    operator = kind.get("deployment", f"{FULLNAME}-operator", NAMESPACE)
    assert operator is not None
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={AGENTS}" in args
    helm(kind, "test", RELEASE, "--timeout=3m")
    password = kind.get("secret", f"{FULLNAME}-redis", NAMESPACE)
    assert password is not None
    assert redis(kind, "SET", MARKER, "sessions") == "OK"

    # An upgrade that changes the gateway's Pods: they roll, two of them, Redis and its data stay.
    before = gateway_pods(kind)
    redis_uid = (kind.get("pod", f"{FULLNAME}-redis-0", NAMESPACE) or {})["metadata"]["uid"]
    install(kind, "--reuse-values", "--set", "gateway.replicas=2",
            "--set", "gateway.settings.leaseSeconds=6")  # fmt: skip
    after = wait_until(
        lambda: (pods := gateway_pods(kind)) and len(pods) == 2 and pods, "two new gateway Pods"
    )
    assert not set(after) & set(before), "the gateway Pods were replaced"
    (template,) = set(after.values())
    assert template not in before.values()
    assert (kind.get("pod", f"{FULLNAME}-redis-0", NAMESPACE) or {})["metadata"]["uid"] == redis_uid
    again = kind.get("secret", f"{FULLNAME}-redis", NAMESPACE)
    assert again is not None
    assert again["data"]["password"] == password["data"]["password"]
    assert redis(kind, "GET", MARKER) == "sessions"
    helm(kind, "test", RELEASE, "--timeout=3m")  # the upgraded release still passes its test

    helm(kind, "uninstall", RELEASE, "--wait", "--timeout=3m")
    kept = {f"persistentvolumeclaim/{CLAIM}"}
    settles(kind, kept)
    assert kind.get("crd", "agents.paddock.dev") is not None, "helm never deletes its CRDs"
    assert kind.get("clusterrole", "paddock-operator") is not None, "the main release is untouched"
    assert kind.get("deployment", "paddock-operator", SYSTEM_NAMESPACE) is not None

    # What was kept is the data: installing again picks the sessions up.
    install(kind)
    assert redis(kind, "GET", MARKER) == "sessions"


def test_the_claim_goes_too_when_the_user_did_not_keep_it(kind: Kind, fresh: None) -> None:
    install(kind, "--reuse-values", "--set", "redis.persistence.keepOnUninstall=false")
    claim = kind.get("pvc", CLAIM, NAMESPACE)
    assert claim is not None
    volume = claim["spec"]["volumeName"]
    helm(kind, "uninstall", RELEASE, "--wait", "--timeout=3m")
    # The StatefulSet controller deletes the claim after the StatefulSet, then its volume goes.
    settles(kind, set())
    wait_until(lambda: kind.get("pv", volume) is None, f"volume {volume} deleted", 120)
