"""Tier 4: paddock's Pods against the Pod Security Standards, as a cluster admin checks them.

Every namespace that holds a paddock Pod (the example Agent's, paddock-system, each test's) could
enforce `restricted` without one Pod violating it: `kubectl label --dry-run=server` says so. The one
exception is the CNI installer in kube-system, which writes the node's CNI directories like every
CNI's node agent does: its violations are exactly those, and nothing more (no capability, no
privilege escalation).
"""

from __future__ import annotations

import json
import re

import pytest

from paddock.kubeobj import Obj
from paddock_testing.kind import EXAMPLE_AGENT, EXAMPLE_NAMESPACE, Kind

pytestmark = pytest.mark.cluster

NAME = "app.kubernetes.io/name"
INSTALLER_NAMESPACE = "kube-system"
ENFORCE = "pod-security.kubernetes.io/enforce"


def paddock_pods(kind: Kind) -> list[Obj]:
    """Every Pod of paddock's, in every namespace: their name label starts with paddock-."""
    return [
        p
        for p in kind.items("pods", None, "--all-namespaces")
        if (p["metadata"].get("labels") or {}).get(NAME, "").startswith("paddock-")
    ]


def would_violate(kind: Kind, namespace: str, level: str) -> list[str]:
    """The warnings the API server gives for enforcing `level` on the namespace (a dry run)."""
    done = kind.kubectl(
        "label", "--dry-run=server", "--overwrite", "namespace", namespace,
        f"{ENFORCE}={level}", f"{ENFORCE}-version=latest",
    )  # fmt: skip
    return [line for line in done.stderr.splitlines() if line.startswith("Warning:")]


def violations(message: str) -> set[str]:
    """The names of the checks a Pod Security refusal lists: `a (why), b, c (why)` -> {a, b, c}."""
    listed = message.split(':latest": ', 1)[1]
    names, depth, current = set(), 0, ""
    for char in listed:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            names.add(current.split(" (", maxsplit=1)[0].strip())
            current = ""
        else:
            current += char
    names.add(current.split(" (")[0].strip())
    return names


def test_no_namespace_of_paddock_pods_would_violate_restricted(kind: Kind) -> None:
    pods = paddock_pods(kind)
    namespaces = {p["metadata"]["namespace"] for p in pods} - {INSTALLER_NAMESPACE}
    # The sandbox of the example Agent, and the control plane's Pods, are among them.
    assert {EXAMPLE_NAMESPACE, "paddock-system"} <= namespaces
    sandboxes = [p for p in pods if p["metadata"]["labels"][NAME] == "paddock-agent"]
    assert any(p["metadata"]["namespace"] == EXAMPLE_NAMESPACE for p in sandboxes)
    for namespace in sorted(namespaces):
        assert would_violate(kind, namespace, "restricted") == [], namespace
    # The example runs where `restricted` is already enforced (kind/up.sh labels it), and is Ready.
    example = kind.get("namespace", EXAMPLE_NAMESPACE) or {}
    assert example["metadata"]["labels"].get(ENFORCE) == "restricted"
    assert kind.agent_ready(EXAMPLE_NAMESPACE, EXAMPLE_AGENT)


def test_the_cni_installer_needs_only_the_node_directories(kind: Kind, namespace: str) -> None:
    (installer,) = [p for p in paddock_pods(kind) if p["metadata"]["labels"][NAME] == "paddock-cni"]
    assert installer["metadata"]["namespace"] == INSTALLER_NAMESPACE
    # Its Pod, as the DaemonSet makes it, offered to a namespace that enforces each level.
    spec = {k: v for k, v in installer["spec"].items() if k not in ("nodeName", "priority")}
    copy = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "installer"}, "spec": spec}
    found = {}
    for level in ("restricted", "baseline"):
        kind.kubectl("label", "--overwrite", "namespace", namespace, f"{ENFORCE}={level}")
        done = kind.kubectl(
            "create", "--dry-run=server", "-f", "-", namespace=namespace,
            input=json.dumps(copy), check=False,
        )  # fmt: skip
        assert done.returncode != 0, f"{level} admitted the installer"
        assert re.search(rf'violates PodSecurity "{level}:latest"', done.stderr), done.stderr
        found[level] = violations(done.stderr.strip())
    # Root, to write root-owned directories, and the directories themselves: nothing else.
    # (`restricted` names the hostPath volumes "restricted volume types"; `baseline`, by name.)
    assert found["restricted"] == {"restricted volume types", "runAsNonRoot != true", "runAsUser=0"}
    assert found["baseline"] == {"hostPath volumes"}
