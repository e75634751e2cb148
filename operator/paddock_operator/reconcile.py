"""Reconcile one Agent: make its objects match the spec, then report what is there in status.

Idempotent and non-blocking: every step checks before it acts. What has to wait on the API
server's own progress (an old Pod still terminating) ends the reconcile: the Pod's deletion event
starts the next one. What waits on the user (a missing Secret) raises kopf.TemporaryError.
"""

from __future__ import annotations

import asyncio
import base64
import json
import weakref
from dataclasses import dataclass
from typing import Any

import kopf

from paddock import pki, sandbox
from paddock.api import agent as api
from paddock.api.agent import AgentSpec
from paddock_operator import kube, stubs
from paddock_operator.kube import ConflictError, InvalidError, Kube
from paddock_operator.names import SPEC_HASH, AgentRef
from paddock_operator.render import objects
from paddock_operator.render.pod import pod as render_pod
from paddock_operator.render.pod import spec_hash
from paddock_operator.settings import OperatorSettings
from paddock_operator.status import Observed, find_condition, status

Obj = dict[str, Any]


@dataclass(frozen=True)
class PodOutcome:
    """The Pod as it stands after a reconcile, and the restart count it implies."""

    pod: Obj | None
    restarts: int


def agent_ref(body: Obj) -> AgentRef:
    """Which Agent a body is."""
    meta = body["metadata"]
    return AgentRef(meta["name"], meta["namespace"], meta["uid"], meta.get("generation", 1))


class Reconciler:
    """Reconciles Agents through one API client; one reconcile per Agent at a time."""

    def __init__(self, client: Kube, settings: OperatorSettings) -> None:
        self.kube = client
        self.settings = settings
        # Weak: a lock lives while a reconcile holds or awaits it, not for every Agent ever seen.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, ref: AgentRef) -> asyncio.Lock:
        key = (ref.namespace, ref.name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def reconcile(self, body: Obj) -> Obj:
        """Bring one Agent's objects in line with its spec; return the status written."""
        ref = agent_ref(body)
        lock = self._lock(ref)
        if lock.locked():  # another reconcile ran meanwhile: the body may be stale
            async with lock:
                fresh = await self.kube.get(self._agent_path(ref))
                if fresh is None or fresh["metadata"]["uid"] != ref.uid:
                    return {}  # deleted: the garbage collector takes the rest
                return await self._reconcile(agent_ref(fresh), fresh)
        async with lock:
            return await self._reconcile(ref, body)

    def _agent_path(self, ref: AgentRef, subresource: str | None = None) -> str:
        return kube.path(api.API_VERSION, api.PLURAL, ref.namespace, ref.name, subresource)

    async def _reconcile(self, ref: AgentRef, body: Obj) -> Obj:
        spec = AgentSpec.model_validate(body["spec"])
        previous: Obj = body.get("status") or {}
        ca, stub_values = await self._ensure_ca(ref, spec)
        problem = await self._check_credentials(ref, spec)
        # The Pod first: it names the objects below, and the kubelet waits for them to appear.
        outcome = await self._ensure_pod(
            ref, spec, stub_values, previous=previous, problem=problem, body=body
        )
        await asyncio.gather(
            self.kube.apply(
                objects.vault_config_map(ref, spec, stub_values, ca.cert_pem, self.settings)
            ),
            self.kube.apply(objects.service(ref)),
            self.kube.apply(objects.network_policy(ref, self.settings)),
            self._ensure_workspace(ref, spec, body),
        )
        written = await self._write_status(
            ref, spec, outcome.pod, restarts=outcome.restarts, problem=problem, previous=previous
        )
        if problem:
            await self.kube.event(body, type="Warning", reason=problem[0], message=problem[1])
            raise kopf.TemporaryError(problem[1], delay=self.settings.retry_delay)
        return written

    async def observe_pod(self, body: Obj, pod: Obj, *, deleted: bool) -> None:
        """A sandbox Pod changed: refresh the status; a Pod that is gone or failed is replaced."""
        if deleted or pod.get("status", {}).get("phase") == "Failed":
            await self.reconcile(body)
            return
        ref = agent_ref(body)
        if pod["metadata"].get("deletionTimestamp"):
            return  # its deletion event follows
        async with self._lock(ref):
            previous: Obj = body.get("status") or {}
            credentials = find_condition(previous, "CredentialsReady") or {}
            problem = None
            if credentials.get("status") == "False":
                problem = (credentials["reason"], credentials.get("message", ""))
            spec = AgentSpec.model_validate(body["spec"])
            # The body may predate the last reconcile's status: leave restarts to reconciles.
            await self._write_status(
                ref, spec, pod, restarts=None, problem=problem, previous=previous
            )

    async def _write_status(
        self,
        ref: AgentRef,
        spec: AgentSpec,
        pod: Obj | None,
        *,
        restarts: int | None,
        problem: tuple[str, str] | None,
        previous: Obj,
    ) -> Obj:
        """Patch the status subresource, unless it already says exactly this.

        restarts None leaves the count as it is (a merge patch without the field).
        """
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
            ),
            previous,
        )
        if restarts is None:
            del written["restarts"]
        if any(previous.get(k) != v for k, v in written.items()):
            await self.kube.patch(self._agent_path(ref, "status"), {"status": written})
        return written

    async def _ensure_ca(
        self, ref: AgentRef, spec: AgentSpec
    ) -> tuple[pki.KeyPair, dict[str, str]]:
        """The Agent's CA and stubs: made once, kept; new credentials get new stubs."""
        path = kube.path("v1", "secrets", ref.namespace, ref.ca_secret)
        secret = await self.kube.get(path)
        if secret is None:
            ca = pki.new_ca(f"paddock agent {ref.namespace}/{ref.name}")
            values = stubs.reconcile_stubs(spec, {})
            try:
                await self.kube.create(objects.ca_secret(ref, ca, values))
            except ConflictError as error:  # another reconcile made it first: use theirs
                raise kopf.TemporaryError("CA Secret appeared meanwhile", delay=0.5) from error
            return ca, values
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
            await self.kube.event(
                body, type="Warning", reason="WorkspaceNotUpdated", message=error.message
            )

    async def _check_credentials(self, ref: AgentRef, spec: AgentSpec) -> tuple[str, str] | None:
        """(reason, message) for the first credential whose Secret or key is missing."""
        names = sorted({c.secret_ref.name for c in spec.credentials})
        found = await asyncio.gather(
            *(self.kube.get(kube.path("v1", "secrets", ref.namespace, name)) for name in names)
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
        body: Obj,
    ) -> PodOutcome:
        path = kube.path("v1", "pods", ref.namespace, ref.pod)
        restarts = int(previous.get("restarts", 0))
        existing = await self.kube.get(path)
        if existing is not None:
            meta = existing["metadata"]
            if meta.get("deletionTimestamp"):
                return PodOutcome(None, restarts)  # its deletion event brings us back
            why = self._replace_reason(existing, spec)
            if why is None:
                return PodOutcome(existing, restarts)
            restarts += why == "PodFailed"
            await self.kube.delete(path, uid=meta["uid"])
            await self.kube.event(
                body,
                type="Normal",
                reason="PodDeleted",
                message=f"deleted {ref.pod}: {why}",
            )
            return PodOutcome(None, restarts)
        if spec.suspend or problem:
            return PodOutcome(None, restarts)
        if previous.get("podName"):
            restarts += 1  # it was there last time and nobody here removed it
        desired = render_pod(ref, spec, self.settings, stub_values)
        try:
            created = await self.kube.create(desired)
        except ConflictError as error:
            raise kopf.TemporaryError("the sandbox Pod appeared meanwhile", delay=0.5) from error
        await self.kube.event(
            body, type="Normal", reason="PodCreated", message=f"created {ref.pod}"
        )
        return PodOutcome(created, restarts)

    def _replace_reason(self, existing: Obj, spec: AgentSpec) -> str | None:
        if spec.suspend:
            return "Suspended"
        if existing.get("status", {}).get("phase") == "Failed":
            return "PodFailed"
        annotations = existing["metadata"].get("annotations") or {}
        if annotations.get(SPEC_HASH) != spec_hash(spec, self.settings):
            return "SpecChanged"
        return None
