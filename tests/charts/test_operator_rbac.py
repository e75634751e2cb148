"""The chart's operator RBAC is enough to run every reconcile, and no more than that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from paddock_testing.apiserver import ApiServer
from paddock_testing.cluster import Cluster, wait_for
from paddock_testing.helm import render

pytestmark = pytest.mark.apiserver

CHART = Path(__file__).resolve().parents[2] / "charts" / "paddock"
SYSTEM = "paddock-system"


@pytest.fixture(scope="module")
def operator_kubeconfig(
    apiserver: ApiServer, helm: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig holding a token of the chart's operator ServiceAccount, nothing more."""
    apiserver.kubectl("create", "namespace", SYSTEM, check=False)  # the gateway's test may have
    rbac = render(helm, "templates/operator-rbac.yaml", namespace=SYSTEM)
    apiserver.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    )
    account = next(d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount")
    token = apiserver.kubectl(
        "create", "token", account, "-n", SYSTEM, "--duration=1h"
    ).stdout.strip()
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": apiserver.url,
                            "certificate-authority": str(apiserver.ca_file),
                        },
                    }
                ],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
                "current-context": "c",
            }
        )
    )
    return path


@pytest.fixture
def operator_as_its_service_account(operator_kubeconfig: Path, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "paddock.cli", "operator", "--standalone"],
            env=os.environ | {"KUBECONFIG": str(operator_kubeconfig), "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield log
    process.terminate()
    process.wait(timeout=30)


def test_cluster_role_grants_no_wildcards_and_never_lists_secrets(helm: str) -> None:
    role = next(
        d
        for d in render(helm, "templates/operator-rbac.yaml", namespace=SYSTEM)
        if d["kind"] == "ClusterRole"
    )
    for rule in role["rules"]:
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule["resources"], rule
        if "secrets" in rule["resources"]:
            assert not {"list", "watch", "delete"} & set(rule["verbs"]), rule


def test_operator_reconciles_with_only_the_charts_permissions(
    apiserver: ApiServer, namespace: str, operator_as_its_service_account: Path
) -> None:
    cluster = Cluster(apiserver, namespace)
    docs = [
        d
        for d in yaml.safe_load_all(
            (CHART.parents[1] / "examples" / "llamacpp-agent.yaml").read_text()
        )
        if d
    ]
    secret = cluster.secret("github", token="real-value")  # noqa: S106 - a test value
    cluster.apply(secret, *docs)
    try:
        pod = cluster.wait_pod("coder")
        for kind, name in [
            ("service", "coder"),
            ("configmap", "coder-vault"),
            ("secret", "coder-ca"),
            ("networkpolicy", "coder-sandbox"),
            ("pvc", "coder-workspace"),
        ]:
            wait_for(lambda kind=kind, name=name: cluster.get(kind, name), f"{kind}/{name}")
        cluster.play_kubelet("coder")
        wait_for(lambda: cluster.agent_status("coder").get("phase") == "Ready", "phase Ready")
        events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=coder")
        assert "PodCreated" in events
        cluster.kubectl("delete", "pod", "coder-sandbox", "--grace-period=0", "--force")
        cluster.wait_pod("coder", other_than=pod["metadata"]["uid"])
    except AssertionError:
        log = operator_as_its_service_account.read_text(errors="replace")
        raise AssertionError(f"operator log:\n{log[-4000:]}") from None
    log = operator_as_its_service_account.read_text(errors="replace")
    assert "Forbidden" not in log, log[-4000:]
    assert " 403 " not in log, log[-4000:]
