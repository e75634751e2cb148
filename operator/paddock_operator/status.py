"""An Agent's status, derived from what the operator observed: phase and conditions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from paddock import sandbox
from paddock.kubeobj import Obj, rfc3339, timestamp


@dataclass(frozen=True)
class Observed:
    """What one reconcile saw."""

    generation: int
    suspended: bool
    external: bool
    pod: Obj | None
    restarts: int
    endpoint: str
    model: str
    credentials_problem: tuple[str, str] | None = None
    """(reason, message) when a credential's Secret or key is missing."""
    idle_suspended: tuple[datetime, str] | None = None
    """(since when, what the condition says) while it is suspended for being idle."""


def find_condition(status: Obj, kind: str) -> Obj | None:
    """The condition of a type in a status (a Pod's or an Agent's), if there is one."""
    for condition in status.get("conditions", []):
        if condition.get("type") == kind:
            found: Obj = condition
            return found
    return None


def _pod_condition(pod: Obj, kind: str) -> Obj | None:
    return find_condition(pod.get("status", {}), kind)


def container_status(pod: Obj, name: str) -> Obj | None:
    """A container's status in a Pod, init containers' included."""
    status = pod.get("status", {})
    for entry in status.get("containerStatuses", []) + status.get("initContainerStatuses", []):
        if entry.get("name") == name:
            found: Obj = entry
            return found
    return None


def _waiting(container: Obj | None, default: str) -> tuple[str, str]:
    waiting = ((container or {}).get("state") or {}).get("waiting") or {}
    return waiting.get("reason") or default, waiting.get("message") or ""


def egress_failed(pod: Obj) -> bool:
    """Whether the Pod's egress-check (CNI mode) has failed: the node's plugin did not set up its
    network. It never recovers in place: the check runs in the network namespace it was given."""
    container = container_status(pod, sandbox.EGRESS_CHECK_CONTAINER) or {}
    state = container.get("state") or {}
    if "waiting" in state:  # between two tries: the last one tells
        state = container.get("lastState") or {}
    return bool((state.get("terminated") or {}).get("exitCode", 0))


def egress_passed(pod: Obj) -> bool:
    """Whether the Pod's egress-check (CNI mode) has succeeded."""
    container = container_status(pod, sandbox.EGRESS_CHECK_CONTAINER) or {}
    terminated = (container.get("state") or {}).get("terminated") or {}
    return terminated.get("exitCode") == 0


def age_seconds(pod: Obj, now: datetime | None = None) -> float:
    """Seconds since the Pod was created."""
    created = timestamp(pod["metadata"]["creationTimestamp"])
    return ((now or datetime.now(UTC)) - created).total_seconds()


IDLE = "Idle"
"""The Ready condition's reason (and the Event's) while an Agent is suspended for being idle."""

EGRESS_NOT_SET_UP = (
    "EgressNotSetUp",
    "the node's paddock-egress CNI plugin did not set up this Pod's network (is the paddock-cni "
    "DaemonSet ready on its node?); the Pod is replaced",
)


def _credentials(seen: Observed) -> tuple[str, str, str]:
    if seen.credentials_problem:
        return "False", *seen.credentials_problem
    return "True", "SecretsFound", "every credential's Secret and key exist"


def _pod_or_why_not(seen: Observed) -> Obj | tuple[str, str, str]:
    """The Pod to derive a condition from, or the False condition that says why there is none."""
    if seen.suspended:
        return "False", "Suspended", "spec.suspend is true"
    if seen.idle_suspended:
        return "False", IDLE, seen.idle_suspended[1]
    if seen.pod is None:
        return "False", "PodNotCreated", "the sandbox Pod does not exist yet"
    return seen.pod


def _scheduled(seen: Observed) -> tuple[str, str, str]:
    pod = _pod_or_why_not(seen)
    if isinstance(pod, tuple):
        return pod
    found = _pod_condition(pod, "PodScheduled")
    if found and found.get("status") == "True":
        return "True", "Scheduled", f"on node {pod.get('spec', {}).get('nodeName', '')}"
    found = found or {}
    return "False", found.get("reason") or "Pending", found.get("message") or "waiting for a node"


def _model(seen: Observed) -> tuple[str, str, str]:
    if seen.external:
        return "True", "ExternalEndpoint", "the model is served outside the Pod"
    if seen.pod is None:
        return "False", "PodNotCreated", "the sandbox Pod does not exist yet"
    container = container_status(seen.pod, sandbox.MODEL_CONTAINER)
    if container and container.get("ready"):
        return "True", "ModelServerReady", f"serving {seen.model}"
    reason, message = _waiting(container, "ModelLoading")
    return "False", reason, message or "the model server is not answering /health yet"


def _ready(seen: Observed) -> tuple[str, str, str]:
    pod = _pod_or_why_not(seen)
    if isinstance(pod, tuple):
        return pod
    found = _pod_condition(pod, "Ready")
    if found and found.get("status") == "True":
        return "True", "PodReady", "every container is ready"
    if egress_failed(pod):
        return "False", *EGRESS_NOT_SET_UP
    harness = container_status(pod, sandbox.HARNESS_CONTAINER)
    reason, message = _waiting(harness, "ContainersNotReady")
    return "False", reason, message or "waiting for every container to be ready"


def phase(seen: Observed) -> str:
    """Pending, Starting, Ready, Suspended or Failed."""
    if seen.suspended or seen.idle_suspended:
        return "Suspended"
    if seen.pod is None or seen.credentials_problem:
        return "Pending"
    if seen.pod.get("status", {}).get("phase") == "Failed":
        return "Failed"
    if _ready(seen)[0] == "True":
        return "Ready"
    return "Starting" if _scheduled(seen)[0] == "True" else "Pending"


def conditions(seen: Observed, previous: list[Obj], now: datetime | None = None) -> list[Obj]:
    """The four conditions; a condition keeps its lastTransitionTime while its status holds."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = {c.get("type"): c for c in previous}
    out = []
    for kind, derive in (
        ("CredentialsReady", _credentials),
        ("PodScheduled", _scheduled),
        ("ModelReady", _model),
        ("Ready", _ready),
    ):
        status, reason, message = derive(seen)
        old = before.get(kind, {})
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": since or stamp,
                "observedGeneration": seen.generation,
            }
        )
    return out


def status(seen: Observed, previous: Obj, now: datetime | None = None) -> Obj:
    """The whole status subresource body."""
    idle = seen.idle_suspended
    return {
        "phase": phase(seen),
        "conditions": conditions(seen, previous.get("conditions", []), now),
        "observedGeneration": seen.generation,
        "podName": (seen.pod or {}).get("metadata", {}).get("name"),
        "endpoint": seen.endpoint,
        "model": seen.model,
        "restarts": seen.restarts,
        # Sub-second: the gateway's activity must be told apart from it (a merge patch's null
        # removes the field once the Agent is woken or resumed).
        "idleSuspendTime": rfc3339(idle[0]) if idle else None,
    }
