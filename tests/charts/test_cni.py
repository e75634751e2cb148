"""The chart in CNI mode: the node installer's DaemonSet, and what the operator is told."""

from __future__ import annotations

from typing import Any

import pytest

from paddock.cli import parser
from paddock_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

CNI = {"operator": {"sandboxEgressMode": "cni"}}


def test_init_container_mode_deploys_no_node_component(chart: Any) -> None:
    rendered = chart.render({"operator": {"sandboxEgressMode": "init-container"}})
    assert rendered.all("DaemonSet") == []


def test_cni_mode_is_the_default_and_a_second_release_can_leave_the_installer_out(
    chart: Any,
) -> None:
    assert chart.render().find("DaemonSet", "cni")["metadata"]["namespace"] == "kube-system"
    rendered = chart.render({"cni": {"install": False}})
    assert rendered.all("DaemonSet") == []
    (operator,) = rendered.find("Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    assert rendered.env(operator)["PADDOCK_OPERATOR_EGRESS_MODE"] == "cni"


def test_cni_mode_tells_the_operator_and_deploys_the_installer_on_every_node(chart: Any) -> None:
    rendered = chart.render(CNI)
    (operator,) = rendered.find("Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    env = rendered.env(operator)
    settings = OperatorSettings.model_validate(
        {k.removeprefix("PADDOCK_OPERATOR_").lower(): v for k, v in env.items()}
    )
    assert settings.egress_mode == "cni"
    daemonset = rendered.find("DaemonSet", "cni")
    assert daemonset["metadata"]["namespace"] == "kube-system"
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["automountServiceAccountToken"] is False  # it never talks to the API server
    (install,) = spec["containers"]
    # Root for the node's root-owned directories, and nothing more: no capability, no escalation.
    context = install["securityContext"]
    assert context["runAsUser"] == 0
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False
    assert "privileged" not in context
    paths = {v["name"]: v.get("hostPath", {}).get("path") for v in spec["volumes"]}
    assert paths == {"cni-bin": "/opt/cni/bin", "cni-conf": "/etc/cni/net.d", "run": None}
    # The args are ones `paddock cni-install` accepts.
    args = parser().parse_args(install["args"])
    assert args.cni_bin_dir == "/host/cni/bin"
    assert args.cni_conf_dir == "/host/cni/net.d"
    assert install["readinessProbe"]["exec"]["command"] == ["test", "-f", args.ready_file]


def test_the_installer_follows_the_nodes_paths_and_iptables(chart: Any) -> None:
    values = CNI | {
        "cni": {"binDir": "/usr/libexec/cni", "iptables": "iptables-legacy", "namespace": "cni"}
    }
    daemonset = chart.render(values).find("DaemonSet", "cni")
    spec = daemonset["spec"]["template"]["spec"]
    assert daemonset["metadata"]["namespace"] == "cni"
    assert parser().parse_args(spec["containers"][0]["args"]).iptables == "iptables-legacy"
    paths = {v["name"]: v.get("hostPath", {}).get("path") for v in spec["volumes"]}
    assert paths["cni-bin"] == "/usr/libexec/cni"
