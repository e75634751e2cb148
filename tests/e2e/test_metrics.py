"""Tier 4: a real Prometheus in the kind cluster scrapes paddock the way a user's would.

Debian's Prometheus (tests/e2e/prometheus, a test image built here and loaded into kind) runs in
a namespace of its own, scrapes the paddock-system Pods that ask for it by their
`prometheus.io/*` annotations, through the chart's NetworkPolicy, which the release opens to it
with `networkPolicy.operator.metricsFrom` (left set: a rerun changes nothing).
The test asks it with PromQL, through the API server's proxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from paddock_testing.kind import (
    CLUSTER,
    EXAMPLE_AGENT,
    EXAMPLE_NAMESPACE,
    REPO,
    SYSTEM_NAMESPACE,
    Kind,
    plain_pod,
    wait_until,
)
from paddock_testing.proc import script_exports

pytestmark = pytest.mark.cluster

NAMESPACE = "e2e-monitoring"
IMAGE_DIR = Path(__file__).parent / "prometheus"
METRICS_FROM = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}}]


def config(kind: Kind) -> str:
    """A scrape of every paddock-system Pod that asks for one by its `prometheus.io/*` annotations.

    Debian builds Prometheus without Kubernetes discovery, so the test reads the annotations
    itself, as kubernetes_sd_configs with the usual relabelling would, into static targets.
    """
    jobs = []
    for pod in kind.items("pods", SYSTEM_NAMESPACE):
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true" or not pod["status"].get("podIP"):
            continue
        target = f"{pod['status']['podIP']}:{annotations['prometheus.io/port']}"
        component = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        jobs.append(
            {
                "job_name": pod["metadata"]["name"],
                "metrics_path": annotations.get("prometheus.io/path", "/metrics"),
                "static_configs": [{"targets": [target], "labels": {"component": component}}],
            }
        )
    settings = {"scrape_interval": "2s", "evaluation_interval": "2s"}
    return json.dumps({"global": settings, "scrape_configs": jobs})  # JSON is YAML


def image(kind: Kind) -> str:
    """The Prometheus test image, built when its Dockerfile changed, and loaded into kind."""
    digest = hashlib.sha256((IMAGE_DIR / "Dockerfile").read_bytes()).hexdigest()[:12]
    tag = f"paddock-e2e/prometheus:{digest}"
    have = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    if have.returncode != 0:
        subprocess.run(
            ["docker", "build", "--quiet", "--tag", tag, str(IMAGE_DIR)],
            capture_output=True, check=True, timeout=1200,
        )  # fmt: skip
    kind_bin = script_exports(REPO / "kind" / "tools.sh")["PADDOCK_KIND"]
    subprocess.run(
        [kind_bin, "load", "docker-image", "--name", CLUSTER, tag],
        capture_output=True, check=True, timeout=600,
        env={**os.environ, "PATH": "/usr/bin:" + os.environ["PATH"]},  # Debian's docker client
    )  # fmt: skip
    return tag


def objects(tag: str, scrape: str) -> list[dict[str, Any]]:
    """Prometheus and its configuration."""
    labels = {"app.kubernetes.io/name": "e2e-prometheus"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "prometheus"},
            "data": {"prometheus.yml": scrape},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "prometheus", "labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "prometheus",
                        "image": tag,
                        "imagePullPolicy": "Never",
                        "args": [
                            "--config.file=/etc/prometheus/prometheus.yml",
                            "--storage.tsdb.path=/prometheus",
                            "--web.listen-address=:9090",
                        ],
                        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": 9090}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/prometheus"},
                            {"name": "data", "mountPath": "/prometheus"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "config", "configMap": {"name": "prometheus"}},
                    {"name": "data", "emptyDir": {}},
                ],
            },
        },
    ]


@pytest.fixture(scope="module")
def prometheus(kind: Kind) -> Kind:
    """Prometheus running, a fresh Pod each run, and the release open to it."""
    tag = image(kind)
    if kind.get("namespace", NAMESPACE) is None:
        kind.kubectl("create", "namespace", NAMESPACE)
    kind.kubectl("delete", "pod", "prometheus", "--ignore-not-found", namespace=NAMESPACE)
    values = json.loads(
        kind.helm("get", "values", "paddock", "-n", SYSTEM_NAMESPACE, "-o", "json").stdout
    )
    if ((values or {}).get("networkPolicy") or {}).get("operator", {}).get("metricsFrom") != (
        METRICS_FROM
    ):
        kind.helm(
            "upgrade", "paddock", str(REPO / "charts" / "paddock"), "-n", SYSTEM_NAMESPACE,
            "--reuse-values", "--set-json",
            f"networkPolicy.operator.metricsFrom={json.dumps(METRICS_FROM)}",
            "--wait", "--timeout=5m",
        )  # fmt: skip
    kind.kubectl(
        "rollout", "status", "deployment/paddock-operator", "--timeout=180s",
        namespace=SYSTEM_NAMESPACE,
    )  # fmt: skip
    kind.apply(*objects(tag, config(kind)), namespace=NAMESPACE)
    kind.kubectl(
        "wait", "pod", "prometheus", "--for=condition=Ready", "--timeout=180s", namespace=NAMESPACE
    )
    return kind


def query(kind: Kind, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    path = (
        f"/api/v1/namespaces/{NAMESPACE}/pods/prometheus:9090/proxy/api/v1/query?"
        + urllib.parse.urlencode({"query": promql})
    )
    answer = json.loads(kind.kubectl("get", "--raw", path).stdout)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def value(kind: Kind, promql: str) -> float | None:
    found = query(kind, promql)
    return float(found[0]["value"][1]) if found else None


def test_prometheus_scrapes_the_operator_through_its_network_policy(
    prometheus: Kind, namespace: str
) -> None:
    # Found by its annotations, scraped through the policy that metricsFrom opened.
    wait_until(
        lambda: value(prometheus, 'up{component="paddock-operator"}') == 1 or None,
        "Prometheus to scrape the operator",
        120,
    )
    assert prometheus.agent_ready(EXAMPLE_NAMESPACE, EXAMPLE_AGENT)
    assert (value(prometheus, 'paddock_operator_agents{phase="Ready"}') or 0) >= 1
    assert (value(prometheus, "paddock_operator_sandbox_start_seconds_count") or 0) >= 1
    ok = 'sum(paddock_operator_reconcile_duration_seconds_count{outcome="ok"})'
    assert (value(prometheus, ok) or 0) >= 1
    # One family names each Agent, for alerts on one Agent; the others stay bounded.
    mine = f'namespace="{EXAMPLE_NAMESPACE}",agent="{EXAMPLE_AGENT}"'
    assert value(prometheus, f'paddock_operator_agent_phase{{{mine},phase="Ready"}}') == 1
    others = '{__name__=~"paddock_operator_.*",__name__!="paddock_operator_agent_phase"}'
    series = query(prometheus, others)
    assert series
    for sample in series:
        assert EXAMPLE_AGENT not in json.dumps(sample["metric"]), sample["metric"]
    # ...and only Prometheus: a Pod in another namespace cannot reach the metrics port.
    operator = prometheus.items(
        "pods", SYSTEM_NAMESPACE, "-l", "app.kubernetes.io/name=paddock-operator"
    )[0]
    url = f"http://{operator['status']['podIP']}:9090/metrics"
    probe = plain_pod("scrape", ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", url])
    prometheus.apply(probe, namespace=namespace)
    phase = prometheus.finished("scrape", namespace)
    assert phase == "Failed"
