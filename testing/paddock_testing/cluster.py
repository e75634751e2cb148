"""kubectl for one namespace of a test API server, with the kubelet's part played by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from paddock.kubeobj import Obj, rfc3339, timestamp
from paddock_testing.apiserver import ApiServer, ApiServerError
from paddock_testing.wait import wait_for

__all__ = ["Cluster", "wait_for"]


class Cluster:
    """kubectl for one namespace, with the kubelet's part played by hand."""

    def __init__(self, server: ApiServer, namespace: str) -> None:
        self.server = server
        self.namespace = namespace

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.server.kubectl("-n", self.namespace, *args, input=input).stdout

    def get(self, kind: str, name: str) -> Obj | None:
        result = self.server.kubectl(
            "-n", self.namespace, "get", kind, name, "-o", "json", check=False
        )
        if result.returncode != 0:
            if "NotFound" not in result.stderr:
                raise ApiServerError(result.stderr)
            return None
        found: Obj = json.loads(result.stdout)
        return found

    def apply(self, *objects: Obj) -> None:
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"kind": "List", "apiVersion": "v1", "items": list(objects)}),
        )

    def secret(self, name: str, **data: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": data,
        }

    def events(self, name: str) -> list[Obj]:
        """Every Event about the object called name."""
        selector = f"involvedObject.name={name}"
        found: list[Obj] = json.loads(
            self.kubectl("get", "events", "-o", "json", "--field-selector", selector)
        )["items"]
        return found

    def wait_ready(self, agent: str, *, other_than: str | None = None) -> tuple[Obj, datetime]:
        """Play the kubelet for the Agent's (next) Pod until the Agent is Ready: that Pod, and
        when the Agent's Ready condition became True."""
        pod = self.wait_pod(agent, other_than=other_than)
        self.play_kubelet(agent)
        wait_for(lambda: self.agent_status(agent).get("phase") == "Ready", f"{agent} Ready")
        return pod, timestamp(self.condition(agent, "Ready")["lastTransitionTime"])

    def record_activity(self, agent: str) -> datetime:
        """Write the Agent's status.lastActivityTime now, as the gateway does; that time."""
        now = datetime.now(UTC)
        patch = {"status": {"lastActivityTime": rfc3339(now)}}
        self.kubectl(
            "patch", "agent", agent, "--subresource=status", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
        return now

    def wait_idle_suspended(self, agent: str, timeout: float) -> datetime:
        """Wait until the operator suspends the Agent for being idle; its idleSuspendTime."""

        def idle() -> str | None:
            status = self.agent_status(agent)
            return status.get("idleSuspendTime") if status.get("phase") == "Suspended" else None

        return timestamp(wait_for(idle, f"{agent} suspended for being idle", timeout))

    def warnings(self, name: str) -> dict[str, int]:
        """How many Warning Events each reason has about the object called name."""
        found = json.loads(
            self.kubectl(
                "get", "events", "-o", "json",
                "--field-selector", f"involvedObject.name={name},type=Warning",
            )
        )["items"]  # fmt: skip
        counts: dict[str, int] = {}
        for event in found:
            counts[event["reason"]] = counts.get(event["reason"], 0) + event.get("count", 1)
        return counts

    def agent_status(self, name: str) -> Obj:
        return (self.get("agent", name) or {}).get("status") or {}

    def condition(self, agent: str, kind: str) -> Obj:
        for c in self.agent_status(agent).get("conditions", []):
            if c["type"] == kind:
                found: Obj = c
                return found
        return {}

    def pod(self, agent: str) -> Obj | None:
        return self.get("pod", f"{agent}-sandbox")

    def wait_pod(self, agent: str, *, other_than: str | None = None) -> Obj:
        def created() -> Obj | None:
            pod = self.pod(agent)
            if (
                pod
                and pod["metadata"]["uid"] != other_than
                and not pod["metadata"].get("deletionTimestamp")
            ):
                return pod
            return None

        return wait_for(created, f"a sandbox Pod for {agent}")

    def _played_pod(self, agent: str) -> Obj:
        pod = self.pod(agent)
        if pod is None:
            raise ApiServerError(f"no sandbox Pod for {agent} to play the kubelet for")
        return pod

    def _write_pod_status(self, pod: Obj, status: Obj) -> None:
        self.kubectl(
            "patch", "pod", pod["metadata"]["name"], "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def play_kubelet(self, agent: str, *, ready: bool = True, phase: str = "Running") -> None:
        """Write the Pod status a kubelet would: scheduled, and every container ready (or not)."""
        pod = self._played_pod(agent)
        flag = "True" if ready else "False"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # as a kubelet would, now
        containers = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": ready,
                "state": {"running": {"startedAt": stamp}},
            }
            for c in pod["spec"]["containers"]
        ]
        # The first init container (egress-init or egress-check) done, the vault running.
        first, *sidecars = pod["spec"]["initContainers"]
        done = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": stamp}}
        init = [
            {"name": first["name"], "image": first["image"], "imageID": "", "ready": False,
             "restartCount": 0, "started": False, "state": done},
            *({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
               "restartCount": 0, "started": True, "state": {"running": {"startedAt": stamp}}}
              for c in sidecars),
        ]  # fmt: skip
        status = {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", "status": flag, "lastTransitionTime": stamp},
            ],
            "initContainerStatuses": init,
            "containerStatuses": containers,
        }
        self._write_pod_status(pod, status)

    def play_egress_failure(self, agent: str) -> Obj:
        """Write the status a kubelet reports for a sandbox Pod whose egress-check failed (the
        node's CNI plugin did not set it up): Pending, the check between two tries. The Pod."""
        pod = self._played_pod(agent)
        stamp = "2026-11-21T00:00:00Z"
        check = pod["spec"]["initContainers"][0]
        status = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "False", "lastTransitionTime": stamp},
                {"type": "Ready", "status": "False", "lastTransitionTime": stamp},
            ],
            "initContainerStatuses": [
                {
                    "name": check["name"],
                    "image": check["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 1,
                    "started": False,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": stamp,
                            "finishedAt": stamp,
                        }
                    },
                }
            ],
        }
        self._write_pod_status(pod, status)
        return pod
