"""Tier 4: the sandbox's NetworkPolicy is enforced on the kind cluster (paddock-netpol).

The operator gives each sandbox ingress only from the gateway and the operator: any other Pod,
even in the Agent's own namespace, cannot reach the runner. A Pod no policy selects stays
reachable (the control that shows the refusal is the policy's doing, not a broken network).
"""

from __future__ import annotations

import json

import pytest

from paddock_testing.kind import EXAMPLE_AGENT, EXAMPLE_NAMESPACE, Kind, wait_until

pytestmark = pytest.mark.cluster


def curl_pod(kind: Kind, namespace: str, name: str, url: str) -> str:
    """Run curl once from a fresh Pod; its output ends with the HTTP code or 'refused'."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "containers": [
                {
                    "name": "curl",
                    "image": "paddock/harness:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "sh",
                        "-c",
                        "curl -s -o /dev/null -w '%{http_code}' --max-time 5 "
                        f"{url} || echo refused",
                    ],
                }
            ],
        },
    }
    kind.apply(pod, namespace=namespace)

    def finished() -> str | None:
        found = kind.get("pod", name, namespace)
        if found and found["status"].get("phase") in ("Succeeded", "Failed"):
            return kind.kubectl("logs", name, namespace=namespace).stdout
        return None

    return wait_until(finished, f"pod {name} to finish", 120)


def test_only_the_gateway_and_operator_reach_a_sandbox(kind: Kind, namespace: str) -> None:
    sandbox = wait_until(
        lambda: next(iter(kind.sandbox_pods(EXAMPLE_NAMESPACE, EXAMPLE_AGENT)), None),
        "the example sandbox Pod",
    )
    runner = f"http://{sandbox['status']['podIP']}:7000/healthz"
    # The control: a server Pod in the test's namespace that no policy selects.
    server = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "open", "labels": {"app": "open"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "containers": [
                {
                    "name": "http",
                    "image": "paddock/harness:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-m", "http.server", "8080", "--directory", "/"],
                    "readinessProbe": {"tcpSocket": {"port": 8080}},
                }
            ],
        },
    }
    kind.apply(server, namespace=namespace)
    ready = wait_until(
        lambda: (
            (p := kind.get("pod", "open", namespace))
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
            and p
        ),
        "the control server to be ready",
    )
    control = f"http://{ready['status']['podIP']}:8080/"

    assert curl_pod(kind, namespace, "to-control", control).strip() == "200"
    assert curl_pod(kind, namespace, "to-sandbox", runner).strip() in ("000refused", "refused")
    # The policy that refused it is the operator's, on the sandbox.
    policies = json.loads(
        kind.kubectl("get", "networkpolicy", "-o", "json", namespace=EXAMPLE_NAMESPACE).stdout
    )["items"]
    assert any(p["metadata"]["name"].startswith(EXAMPLE_AGENT) for p in policies)
