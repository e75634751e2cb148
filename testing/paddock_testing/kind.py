"""Helpers for tier 4: paddock on a real kind cluster, brought up by kind/up.sh (`make dev`).

The session fixture runs kind/up.sh (idempotent: it builds what is missing, reuses a current
cluster, loads the images, installs the chart, applies the example llama.cpp Agent `coder` with a
tiny generated model and waits for it to be Ready). Tests then act as a user would: kubectl, the
gateway at http://127.0.0.1:30800 (a NodePort mapped by kind/cluster.yaml), `helm`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from paddock.kubeobj import Obj
from paddock_testing.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("PADDOCK_E2E_CLUSTER", "paddock")
SYSTEM_NAMESPACE = "paddock-system"
GATEWAY_URL = "http://127.0.0.1:30800"
EXAMPLE_NAMESPACE = "default"
EXAMPLE_AGENT = "coder"

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    what: str,
    timeout: float = 180,
    *,
    detail: Callable[[], str] | None = None,
) -> T:
    """wait_for at a cluster's pace: once a second, kubectl failures and half-made objects
    (a missing key, no JSON yet) counting as not yet."""
    return wait_for(
        check,
        what,
        timeout,
        every=1,
        tolerate=(subprocess.CalledProcessError, KeyError, json.JSONDecodeError),
        detail=detail,
    )


@dataclass
class Kind:
    """kubectl and helm against the kind cluster, with the binaries `make test` built."""

    kubectl_bin: str
    helm_bin: str
    context: str

    def kubectl(
        self, *args: str, namespace: str | None = None, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        ns = ["-n", namespace] if namespace else []
        return subprocess.run(  # noqa: S603 - the binaries make test built
            [self.kubectl_bin, "--context", self.context, *ns, *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - the binaries make test built
            [self.helm_bin, "--kube-context", self.context, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        done = self.kubectl("get", kind, name, "-o", "json", namespace=namespace, check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise AssertionError(done.stderr)
        found: Obj = json.loads(done.stdout)
        return found

    def items(self, kind: str, namespace: str | None = None, *selector: str) -> list[Obj]:
        done = self.kubectl("get", kind, *selector, "-o", "json", namespace=namespace)
        items: list[Obj] = json.loads(done.stdout)["items"]
        return items

    def apply(self, *objects: Obj, namespace: str | None = None) -> None:
        doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl("apply", "-f", "-", namespace=namespace, input=json.dumps(doc))

    def exec(self, namespace: str, pod: str, container: str, *command: str) -> str:
        return self.kubectl(
            "exec", pod, "-c", container, "--", *command, namespace=namespace
        ).stdout

    def finished(self, pod: str, namespace: str, timeout: float = 120) -> str:
        """Wait for a one-shot Pod to end; its phase, Succeeded or Failed."""

        def phase() -> str | None:
            found = (self.get("pod", pod, namespace) or {}).get("status", {}).get("phase")
            return found if found in ("Succeeded", "Failed") else None

        return wait_until(phase, f"Pod {namespace}/{pod} to finish", timeout)

    def sandbox_pods(self, namespace: str, agent: str) -> list[Obj]:
        return [
            p
            for p in self.items("pods", namespace)
            if any(
                ref.get("kind") == "Agent" and ref.get("name") == agent
                for ref in p["metadata"].get("ownerReferences", [])
            )
        ]

    def agent_ready(self, namespace: str, agent: str) -> Obj | None:
        found = self.get("agent", agent, namespace)
        if found and (found.get("status") or {}).get("phase") == "Ready":
            return found
        return None

    def token(self, namespace: str, service_account: str, agent: str) -> str:
        """A token for a service account allowed to `connect` to `agent` (RBAC made here)."""
        role = f"talk-to-{agent}"
        self.kubectl("create", "serviceaccount", service_account, namespace=namespace, check=False)
        self.kubectl(
            "create", "role", role, "--verb=connect", "--resource=agents.paddock.dev",
            f"--resource-name={agent}", namespace=namespace, check=False,
        )  # fmt: skip
        self.kubectl(
            "create", "rolebinding", f"{service_account}-{agent}", f"--role={role}",
            f"--serviceaccount={namespace}:{service_account}", namespace=namespace, check=False,
        )  # fmt: skip
        return self.kubectl(
            "create", "token", service_account, "--duration=2h", namespace=namespace
        ).stdout.strip()


def plain_pod(name: str, command: list[str], labels: dict[str, str] | None = None) -> Obj:
    """A one-shot Pod of the harness image that runs `command` and passes the `restricted` Pod
    Security Standard: no sandbox, no egress rules of its own."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": "paddock/harness:0.1.0",
                    "command": command,
                    "resources": {"requests": {"cpu": "1m", "memory": "16Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
