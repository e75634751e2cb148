"""Reconcile one Agent: make its objects match the spec, then report what is there in status.

Idempotent and non-blocking: every step checks before it acts. What has to wait on the API
server's own progress (an old Pod still terminating) ends the reconcile: the Pod's deletion event
starts the next one. What waits on the user (a missing Secret) raises kopf.TemporaryError, and
the scheduler (paddock_operator.scheduling) tries again after its delay. The scheduler also holds
the Agent's lock around each call here: these steps never run twice at once for one Agent.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import kopf

from paddock import pki, sandbox
from paddock.api import agent as api
from paddock.api.agent import AgentSpec
from paddock.kubeobj import Obj, rfc3339
from paddock_operator import stubs
from paddock_operator.idle import (
    IdleState,
    change_counts_as_use,
    idle_state,
    status_time,
    suspended_message,
)
from paddock_operator.kube.client import KubeClient
from paddock_operator.kube.errors import ConflictError, InvalidError
from paddock_operator.kube.paths import path
from paddock_operator.kube.priority import urgent
from paddock_operator.memory import Memory
from paddock_operator.metrics import OperatorMetrics
from paddock_operator.names import SPEC_HASH, AgentRef
from paddock_operator.render import objects
from paddock_operator.render.pod import pod as render_pod
from paddock_operator.render.pod import spec_hash
from paddock_operator.settings import OperatorSettings
from paddock_operator.status import (
    EGRESS_NOT_SET_UP,
    IDLE,
    Observed,
    age_seconds,
    egress_failed,
    egress_passed,
    find_condition,
    status,
)

EGRESS_BACKOFF_FIRST = 10.0
EGRESS_BACKOFF_MAX = 300.0


def egress_backoff(replaced: int) -> float:
    """Seconds a Pod whose egress was not set up must have existed before it is replaced, after
    `replaced` such replacements in a row: none for the first (the plugin is most likely back
    after a rollout), then doubling up to five minutes, like the kubelet's own back-off."""
    if replaced == 0:
        return 0.0
    return float(min(EGRESS_BACKOFF_MAX, EGRESS_BACKOFF_FIRST * 2 ** (replaced - 1)))


@dataclass(frozen=True)
class PodOutcome:
    """The Pod as it stands after a reconcile, the restart count it implies, the Events
    (type, reason, message) to post about what was done, and when to look again (seconds)."""

    pod: Obj | None
    restarts: int
    events: tuple[tuple[str, str, str], ...] = ()
    retry_after: float | None = None


def reported_problem(status: Obj) -> tuple[str, str] | None:
    """(reason, message) of the credentials problem a status reports, if it reports one."""
    condition = find_condition(status, "CredentialsReady") or {}
    if condition.get("status") != "False":
        return None
    return condition["reason"], condition.get("message", "")


def agent_path(ref: AgentRef, subresource: str | None = None) -> str:
    """The REST path of the Agent (or of its subresource)."""
    return path(api.API_VERSION, api.PLURAL, ref.namespace, ref.name, subresource)


class Reconciler:
    """The steps that bring one Agent's objects in line with its spec, through one API client."""

    def __init__(
        self, client: KubeClient, settings: OperatorSettings, metrics: OperatorMetrics | None = None
    ) -> None:
        self.kube = client
        self.settings = settings
        self.memory = Memory()
        self.metrics = metrics or OperatorMetrics()
        self.metrics.count_phases(self.memory.phases)
        self._turns = itertools.count()  # reconciles in the order they start: their urgency rank

    async def reconcile(self, ref: AgentRef, body: Obj) -> Obj:
        """Bring the Agent's objects in line with its spec; return the status written."""
        spec = AgentSpec.model_validate(body["spec"])
        previous = self.memory.status_of(ref, body)
        now = datetime.now(UTC)
        used = change_counts_as_use(spec, previous, ref.generation)
        seen = {**previous, "lastActivityTime": rfc3339(now)} if used else previous
        idle = idle_state(spec, seen, now)
        # The Pod first, its requests ahead of every other Agent's follow-ups: the kubelet waits
        # for the objects it names to appear. Only its NetworkPolicy comes before it, so that no
        # sandbox ever runs open. An Agent with no status yet is new: its CA Secret and Pod are
        # created straight away (a conflict falls back to reading). Earlier reconciles go first.
        with urgent(next(self._turns)):
            (ca, stub_values), problem, _ = await asyncio.gather(
                self._ensure_ca(ref, spec, new=not previous),
                self._check_credentials(ref, spec),
                self.kube.apply(objects.network_policy(ref, self.settings)),
            )
            outcome = await self._ensure_pod(
                ref, spec, stub_values, previous=previous, problem=problem, idle=idle
            )
        events = [*outcome.events]
        if idle.woken:
            events.append(("Normal", "Woken", "activity woke the Agent suspended for being idle"))
        if problem and problem != reported_problem(previous):
            events.append(("Warning", *problem))  # once per problem, not once per retry
        await asyncio.gather(
            self.kube.apply(
                objects.vault_config_map(ref, spec, stub_values, ca.cert_pem, self.settings)
            ),
            self.kube.apply(objects.service(ref)),
            self._ensure_workspace(ref, spec, body),
            *(self.kube.event(body, type=t, reason=r, message=m) for t, r, m in events),
        )
        written = await self._write_status(
            ref,
            spec,
            outcome.pod,
            restarts=outcome.restarts,
            problem=problem,
            previous=previous,
            body=body,
            idle_since=idle.suspended_at,
            used_at=now if used else None,
            woken_at=now if idle.woken else None,
        )
        if problem:
            raise kopf.TemporaryError(problem[1], delay=self.settings.retry_delay)
        if outcome.retry_after is not None:
            raise kopf.TemporaryError(EGRESS_NOT_SET_UP[1], delay=outcome.retry_after)
        return written

    async def refresh_status(self, ref: AgentRef, body: Obj, pod: Obj) -> None:
        """Write the status that the sandbox Pod, as it stands now, implies."""
        previous = self.memory.status_of(ref, body)
        problem = reported_problem(previous)
        spec = AgentSpec.model_validate(body["spec"])
        memory = self.memory.of(ref)
        if egress_passed(pod):
            memory.egress_replaced = 0
        ready = find_condition(pod.get("status", {}), "Ready") or {}
        uid = pod["metadata"].get("uid")
        if ready.get("status") == "True" and memory.ready_pod != uid:
            memory.ready_pod = uid
            self.metrics.pod_ready(
                pod["metadata"]["creationTimestamp"], ready["lastTransitionTime"]
            )
        # The body may predate the last reconcile's status: leave restarts to reconciles, and
        # suspending or waking too (the idle check tells the scheduler to reconcile when due).
        await self._write_status(
            ref, spec, pod, restarts=None, problem=problem, previous=previous, body=body,
            idle_since=status_time(previous, "idleSuspendTime"),
        )  # fmt: skip

    async def _write_status(
        self,
        ref: AgentRef,
        spec: AgentSpec,
        pod: Obj | None,
        *,
        restarts: int | None,
        problem: tuple[str, str] | None,
        previous: Obj,
        body: Obj,
        idle_since: datetime | None,
        used_at: datetime | None = None,
        woken_at: datetime | None = None,
    ) -> Obj:
        """Patch the status subresource, unless previous (the status as it stands, body's or the
        one last written) already says exactly this; then note when the idle policy is next due.

        restarts None leaves the count as it is (a merge patch without the field).
        """
        idle_after = spec.lifecycle.idle_after or ""
        written = status(
            Observed(
                generation=ref.generation,
                suspended=spec.suspend,
                external=spec.model.engine == "external",
                pod=pod,
                restarts=int(previous.get("restarts", 0)) if restarts is None else restarts,
                endpoint=f"http://{ref.service}.{ref.namespace}.svc:{sandbox.RUNNER_PORT}",
                model=spec.model.default,
                credentials_problem=problem,
                idle_suspended=(idle_since, suspended_message(idle_after)) if idle_since else None,
            ),
            previous,
        )
        memory = self.memory.of(ref)
        memory.phase = written["phase"]
        if restarts is None:
            del written["restarts"]
        if used_at is not None:
            written["lastActivityTime"] = rfc3339(used_at)
        if woken_at is not None:
            written["wakeTime"] = rfc3339(woken_at)
        elif previous.get("wakeTime") and written["phase"] in ("Ready", "Suspended"):
            written["wakeTime"] = None  # woken, and Ready (or suspended again): no longer waking
        full = {**previous, **written}
        if any(previous.get(k) != v for k, v in written.items()):
            patched = await self.kube.patch(agent_path(ref, "status"), {"status": written})
            full = patched.get("status") or full
            memory.wrote_status(body, patched, full)
        memory.idle_check = _idle_check(idle_state(spec, full, datetime.now(UTC)), full)
        return written

    async def _ensure_ca(
        self, ref: AgentRef, spec: AgentSpec, *, new: bool
    ) -> tuple[pki.KeyPair, dict[str, str]]:
        """The Agent's CA and stubs: made once, kept; new credentials get new stubs.

        new: the Agent has no status yet, so its CA Secret most likely does not exist: create it
        without reading first.
        """
        secret_path = path("v1", "secrets", ref.namespace, ref.ca_secret)
        secret = None if new else await self.kube.get(secret_path)
        if secret is None:
            ca = pki.new_ca(f"paddock agent {ref.namespace}/{ref.name}")
            values = stubs.reconcile_stubs(spec, {})
            try:
                await self.kube.create(objects.ca_secret(ref, ca, values))
                return ca, values
            except ConflictError:  # made before (a reconcile cut short): keep that one
                secret = await self.kube.get(secret_path)
            if secret is None:
                raise kopf.TemporaryError("the CA Secret is being replaced", delay=0.5)
        data = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
        ca = pki.KeyPair(data["tls.crt"], data["tls.key"])
        existing: dict[str, str] = json.loads(data.get("stubs.json", b"{}"))
        values = stubs.reconcile_stubs(spec, existing)
        if values != existing:
            await self.kube.apply(objects.ca_secret(ref, ca, values))
        return ca, values

    async def _ensure_workspace(self, ref: AgentRef, spec: AgentSpec, body: Obj) -> None:
        try:
            await self.kube.apply(objects.workspace_claim(ref, spec))
        except InvalidError as error:  # e.g. shrinking, or a class that cannot expand
            # Once per generation: every resync would otherwise post it again.
            said = (ref.generation, error.message)
            memory = self.memory.of(ref)
            if memory.workspace_warning != said:
                memory.workspace_warning = said
                await self.kube.event(
                    body, type="Warning", reason="WorkspaceNotUpdated", message=error.message
                )

    async def _check_credentials(self, ref: AgentRef, spec: AgentSpec) -> tuple[str, str] | None:
        """(reason, message) for the first credential whose Secret or key is missing."""
        names = sorted({c.secret_ref.name for c in spec.credentials})
        found = await asyncio.gather(
            *(self.kube.get(path("v1", "secrets", ref.namespace, name)) for name in names)
        )
        secrets = dict(zip(names, found, strict=True))
        for credential in spec.credentials:
            secret_ref = credential.secret_ref
            secret = secrets[secret_ref.name]
            if secret is None:
                return "SecretNotFound", (
                    f"Secret {secret_ref.name} (credential {credential.name}) not found in "
                    f"namespace {ref.namespace}"
                )
            if secret_ref.key not in (secret.get("data") or {}):
                return "SecretKeyNotFound", (
                    f"Secret {secret_ref.name} has no key {secret_ref.key} "
                    f"(credential {credential.name})"
                )
        return None

    async def _ensure_pod(
        self,
        ref: AgentRef,
        spec: AgentSpec,
        stub_values: dict[str, str],
        *,
        previous: Obj,
        problem: tuple[str, str] | None,
        idle: IdleState,
    ) -> PodOutcome:
        pod_path = path("v1", "pods", ref.namespace, ref.pod)
        restarts = int(previous.get("restarts", 0))
        wanted = not (spec.suspend or problem or idle.suspended_at)
        # No Pod in the last status: most likely there is none now, so try to create it first.
        create_first = wanted and not previous.get("podName")
        existing = None if create_first else await self.kube.get(pod_path)
        if existing is None and wanted:
            if previous.get("podName"):
                restarts += 1  # it was there last time and nobody here removed it
            desired = render_pod(ref, spec, self.settings, stub_values)
            try:
                created = await self.kube.create(desired)
            except ConflictError:  # only when create_first: restarts is as it was
                existing = await self.kube.get(pod_path)
                if existing is None:  # gone again in between: its deletion event brings us back
                    return PodOutcome(None, restarts)
            else:
                event = ("Normal", "PodCreated", f"created {ref.pod}")
                return PodOutcome(created, restarts, (event,))
        if existing is None or existing["metadata"].get("deletionTimestamp"):
            return PodOutcome(None, restarts)  # a deletion's event brings us back
        if idle.suspended_at:
            await self.kube.delete(pod_path, uid=existing["metadata"]["uid"])
            said = suspended_message(spec.lifecycle.idle_after or "")
            return PodOutcome(None, restarts, (("Normal", IDLE, said),))
        why = self._replace_reason(existing, spec)
        if why is None:
            return PodOutcome(existing, restarts)
        return await self._replace_pod(ref, existing, why, restarts)

    async def _replace_pod(self, ref: AgentRef, pod: Obj, why: str, restarts: int) -> PodOutcome:
        """Delete the Pod (its deletion event brings the next reconcile, which creates it anew);
        one whose egress was not set up only once its back-off has passed."""
        event = ("Normal", "PodDeleted", f"deleted {ref.pod}: {why}")
        if why == EGRESS_NOT_SET_UP[0]:
            memory = self.memory.of(ref)
            wait = egress_backoff(memory.egress_replaced) - age_seconds(pod)
            if wait > 0:
                return PodOutcome(pod, restarts, retry_after=wait)
            memory.egress_replaced += 1
            node = pod.get("spec", {}).get("nodeName", "")
            event = ("Warning", why, f"{ref.pod} on node {node}: {EGRESS_NOT_SET_UP[1]}")
        restarts += why in ("PodFailed", EGRESS_NOT_SET_UP[0])
        self.metrics.replaced.labels(why).inc()
        pod_path = path("v1", "pods", ref.namespace, ref.pod)
        await self.kube.delete(pod_path, uid=pod["metadata"]["uid"])
        return PodOutcome(None, restarts, (event,))

    def _replace_reason(self, existing: Obj, spec: AgentSpec) -> str | None:
        if spec.suspend:
            return "Suspended"
        if existing.get("status", {}).get("phase") == "Failed":
            return "PodFailed"
        if egress_failed(existing):
            return EGRESS_NOT_SET_UP[0]
        annotations = existing["metadata"].get("annotations") or {}
        if annotations.get(SPEC_HASH) != spec_hash(spec, self.settings):
            return "SpecChanged"
        return None


def _idle_check(idle: IdleState, status: Obj) -> float | None:
    """Seconds until the idle policy wants a reconcile: 0 when it is due now (idle long enough,
    or woken, and the status does not say so yet), None when no time will make it due."""
    if idle.woken or (idle.suspended_at is not None and not status.get("idleSuspendTime")):
        return 0.0
    return idle.check_in
