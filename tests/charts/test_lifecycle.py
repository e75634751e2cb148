"""`helm install`, `helm upgrade` and `helm uninstall` against a real API server: the objects
appear, change with the values, and go, leaving only what the user asked to keep."""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from paddock.kubeobj import Obj
from paddock_testing.apiserver import ApiServer
from paddock_testing.cluster import Cluster, wait_for

pytestmark = pytest.mark.apiserver

CHART = Path(__file__).resolve().parents[2] / "charts" / "paddock"


@dataclass(frozen=True)
class Helm:
    """helm against the test API server, with its own config and cache directories."""

    binary: str
    server: ApiServer
    namespace: str
    home: Path

    def __call__(self, *args: str) -> str:
        env = {
            f"HELM_{what}_HOME": str(self.home / what.lower())
            for what in ("CACHE", "CONFIG", "DATA")
        }
        argv = [self.binary, *args, "-n", self.namespace, f"--kubeconfig={self.server.kubeconfig}"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def manifest(self, release: str) -> list[tuple[str, str]]:
        """(kind, name) of every object the release holds."""
        docs = yaml.safe_load_all(self("get", "manifest", release))
        return [(d["kind"], d["metadata"]["name"]) for d in docs if d]


@pytest.fixture
def helm_cli(helm: str, apiserver: ApiServer, namespace: str, tmp_path: Path) -> Helm:
    return Helm(helm, apiserver, namespace, tmp_path)


def release_name() -> str:
    # Unique: ClusterRoles are named after the release, and other tests share this API server.
    return f"p{uuid.uuid4().hex[:8]}"


def claim_of(statefulset: Obj) -> Obj:
    """Redis's PVC as the StatefulSet controller (not running here) makes it: owned by the
    StatefulSet only when its retention policy says Delete."""
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    meta = statefulset["metadata"]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": f"{template['metadata']['name']}-{meta['name']}-0",
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }
    if statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete":
        claim["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": meta["name"],
                "uid": meta["uid"],
            }
        ]
    return claim


def left_in(cluster: Cluster) -> set[str]:
    """Every object in the namespace, by kind/name, but the default ServiceAccount."""
    kinds = "all,configmaps,secrets,serviceaccounts,networkpolicies,pvc,roles,rolebindings"
    names = set(cluster.kubectl("get", kinds, "-o", "name").split())
    return names - {"serviceaccount/default"}


def password(cluster: Cluster, secret: str) -> str:
    found = cluster.get("secret", secret)
    assert found is not None
    return base64.b64decode(found["data"]["password"]).decode()


def test_install_upgrade_uninstall_leave_only_the_crd_and_the_kept_claim(
    helm_cli: Helm, apiserver: ApiServer, namespace: str
) -> None:
    cluster = Cluster(apiserver, namespace)
    release = release_name()
    notes = helm_cli("install", release, str(CHART))
    gateway = f"{release}-paddock-gateway"
    assert f"port-forward svc/{gateway} 8000:8000" in notes
    assert "paddock chat coder" in notes
    installed = helm_cli.manifest(release)
    assert {kind for kind, _ in installed} >= {
        "Deployment", "StatefulSet", "Service", "Secret", "ConfigMap", "NetworkPolicy",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
    }  # fmt: skip
    node_agents = Cluster(apiserver, "kube-system")  # the CNI installer's namespace
    for kind, name in installed:
        where = node_agents if kind == "DaemonSet" else cluster
        assert where.get(kind, name) is not None, f"{kind}/{name}"
    installer = f"{release}-paddock-cni"
    assert ("DaemonSet", installer) in installed
    redis = f"{release}-paddock-redis"
    statefulset = cluster.get("statefulset", redis)
    assert statefulset is not None
    cluster.apply(claim_of(statefulset))
    first_password = password(cluster, redis)

    helm_cli(
        "upgrade", release, str(CHART), "--reuse-values",
        "--set", "gateway.replicas=3", "--set", "networkPolicy.enabled=false",
    )  # fmt: skip
    deployment = cluster.get("deployment", gateway)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    assert not cluster.kubectl("get", "networkpolicies", "-o", "name").strip()
    assert password(cluster, redis) == first_password, "an upgrade must keep Redis's password"

    helm_cli("uninstall", release)
    claim = f"persistentvolumeclaim/data-{redis}-0"
    assert left_in(cluster) == {claim}
    for kind in ("clusterrole", "clusterrolebinding"):
        for name in (gateway, f"{release}-paddock-operator"):
            assert apiserver.kubectl("get", kind, name, check=False).returncode != 0, name
    assert node_agents.get("daemonset", installer) is None
    assert apiserver.kubectl("get", "crd", "agents.paddock.dev").returncode == 0


def test_claim_goes_with_the_release_when_not_kept(
    helm_cli: Helm, apiserver: ApiServer, namespace: str
) -> None:
    cluster = Cluster(apiserver, namespace)
    release = release_name()
    helm_cli("install", release, str(CHART), "--set", "redis.persistence.keepOnUninstall=false")
    statefulset = cluster.get("statefulset", f"{release}-paddock-redis")
    assert statefulset is not None
    cluster.apply(claim_of(statefulset))
    assert f"persistentvolumeclaim/data-{release}-paddock-redis-0" in left_in(cluster)
    helm_cli("uninstall", release)
    # The garbage collector deletes the claim after its StatefulSet.
    wait_for(lambda: not left_in(cluster), f"nothing left, still: {left_in(cluster)}")


def test_install_refuses_bad_values_before_creating_anything(
    helm: str, apiserver: ApiServer, namespace: str, tmp_path: Path
) -> None:
    cluster = Cluster(apiserver, namespace)
    argv = [
        helm, "install", release_name(), str(CHART), "-n", namespace,
        f"--kubeconfig={apiserver.kubeconfig}", "--set", "gateway.replicas=-1",
    ]  # fmt: skip
    env = {"HELM_CONFIG_HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "/gateway/replicas" in done.stderr
    assert not left_in(cluster)
