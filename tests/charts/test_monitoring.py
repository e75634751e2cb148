"""The chart's monitoring objects: off by default; when on, a PodMonitor that finds the operator's
and the gateway's metrics ports, alert rules that promtool accepts and that fire when they should
(promtool's own rule tests, the real Prometheus rule engine), and a dashboard that asks only for
metrics paddock exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from paddock.kubeobj import Obj
from paddock_gateway.metrics import GatewayMetrics
from paddock_operator.metrics import OperatorMetrics
from paddock_vault.metrics import Metrics as VaultMetrics

pytestmark = pytest.mark.unit

CHART = Path(__file__).resolve().parents[2] / "charts" / "paddock"
Chart = Any  # the chart fixture (tests/charts/conftest.py)

ALL_ON = {
    "monitoring": {
        "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": True, "agentNotReadyFor": "15m"},
        "grafanaDashboard": {"enabled": True},
    }
}
KINDS = ("PodMonitor", "PrometheusRule")
METRIC = re.compile(r"\b(paddock_[a-z0-9_]+)")


def exported() -> set[str]:
    """Every series name paddock's components export (histograms with their suffixes)."""
    operator = OperatorMetrics()
    operator.count_phases(lambda: [("ns", "a", "Ready")])
    texts = [operator.text().decode(), VaultMetrics().render(), GatewayMetrics().text(0).decode()]
    names: set[str] = set()
    for text in texts:
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                if kind == "counter" and not name.endswith("_total"):
                    names.add(f"{name}_total")
    return names


def rules(chart: Chart) -> Obj:
    rule: Obj = chart.render(ALL_ON).find("PrometheusRule")["spec"]
    return rule


def test_nothing_of_it_renders_by_default(chart: Chart) -> None:
    rendered = chart.render()
    assert not [o for o in rendered if o["kind"] in KINDS]
    assert not [o for o in rendered.all("ConfigMap") if o["metadata"]["name"].endswith("dashboard")]


def test_the_pod_monitor_finds_the_operators_and_the_gateways_metrics_ports(chart: Chart) -> None:
    rendered = chart.render(ALL_ON)
    monitor = rendered.find("PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["paddock-system"]}
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    scraped = {}
    for workload in rendered.all("Deployment"):
        template = workload["spec"]["template"]
        if chart.selects(monitor["spec"]["selector"], template["metadata"]["labels"]):
            (container,) = template["spec"]["containers"]
            named = {p["name"] for p in container.get("ports", [])}
            scraped[workload["metadata"]["name"]] = named & ports
    assert scraped == {"paddock-operator": {"metrics"}, "paddock-gateway": {"http"}}


def test_promtool_accepts_the_rules_and_they_ask_only_for_exported_metrics(
    chart: Chart, tmp_path: Path
) -> None:
    spec = rules(chart)
    file = tmp_path / "rules.yaml"
    file.write_text(yaml.safe_dump(spec))
    checked = subprocess.run(
        [promtool(), "check", "rules", str(file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    asked = {m for g in spec["groups"] for r in g["rules"] for m in METRIC.findall(r["expr"])}
    assert asked
    assert asked <= exported(), asked - exported()


def _annotations(rule: Obj, **labels: str) -> dict[str, str]:
    out = {}
    for key, template in rule["annotations"].items():
        text = template
        for name, value in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)
        out[key] = text
    return out


def test_an_agent_that_stays_not_ready_fires_its_alert_and_one_that_recovers_does_not(
    chart: Chart, tmp_path: Path
) -> None:
    spec = rules(chart)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    by_name = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    stuck = {"namespace": "team", "agent": "stuck"}
    replaced = by_name["PaddockSandboxPodsReplacedOverAndOver"]
    tests: dict[str, Any] = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'paddock_operator_agent_phase{namespace="team",agent="stuck",'
                        'phase="Starting"}',
                        "values": "1x40",
                    },
                    {
                        "series": 'paddock_operator_agent_phase{namespace="team",agent="fine",'
                        'phase="Starting"}',
                        "values": "1x5 0x35",
                    },
                    {
                        "series": "paddock_operator_sandbox_pods_replaced_total"
                        '{reason="EgressNotSetUp"}',
                        "values": "0+1x40",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "PaddockAgentNotReady", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "PaddockAgentNotReady",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", **stuck},
                                "exp_annotations": _annotations(
                                    by_name["PaddockAgentNotReady"], **stuck
                                ),
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "PaddockSandboxPodsReplacedOverAndOver",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "reason": "EgressNotSetUp"},
                                "exp_annotations": _annotations(replaced, reason="EgressNotSetUp"),
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    ran = subprocess.run(
        [promtool(), "test", "rules", "tests.yaml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_the_dashboard_is_valid_and_asks_only_for_exported_metrics(chart: Chart) -> None:
    rendered = chart.render(ALL_ON)
    config = rendered.find("ConfigMap", "dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["paddock.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "paddock.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in METRIC.findall(e)}
    assert len(dashboard["panels"]) >= 6
    assert asked <= exported(), asked - exported()


def promtool() -> str:
    """promtool, from Debian's prometheus package (hack/host-deps.sh installs it)."""
    found = shutil.which("promtool")
    assert found, "promtool is missing: hack/host-deps.sh installs Debian's prometheus package"
    return found
