"""Reconcile one Agent: make its objects match the spec, then report what is there in status.

Idempotent and non-blocking: every step checks before it acts. What has to wait on the API
server's own progress (an old Pod still terminating) ends the reconcile: the Pod's deletion event
starts the next one. What waits on the user (a missing Secret) raises kopf.TemporaryError, and
attempt() tries again after its delay.

Each Agent generation is taken on once (agent_seen): the operator writes nothing to the Agent but
its status, so kopf's change-detection annotation (a second write per change) is not used.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any

import kopf

from paddock import pki, sandbox
from paddock.api import agent as api
from paddock.api.agent import AgentSpec
from paddock_operator import kube, stubs
from paddock_operator.kube import ConflictError, InvalidError, Kube, KubeError
from paddock_operator.names import SPEC_HASH, AgentRef
from paddock_operator.render import objects
from paddock_operator.render.pod import pod as render_pod
from paddock_operator.render.pod import spec_hash
from paddock_operator.settings import OperatorSettings
from paddock_operator.status import Observed, find_condition, status

Obj = dict[str, Any]
logger = logging.getLogger(__name__)


@dataclass
class _Written:
    """The last status this operator wrote for an Agent, and the versions it made stale."""

    status: Obj
    """The whole status after the write."""
    version: str
    """The Agent's resourceVersion after the write."""
    stale: list[str]
    """resourceVersions of the Agent that predate the write (the newest few)."""


STALE_VERSIONS = 8


@dataclass
class _Memory:
    """What this operator remembers of one Agent; forgotten when the Agent goes."""

    generation: int | None = None
    """The generation taken on (reconciled, or being retried)."""
    written: _Written | None = None
    """Pod events read the Agent from kopf's index, which can still hold the version before the
    last status write: without this, each such event would write the same status again."""
    workspace_warning: tuple[int, str] | None = None
    """(generation, message) of the last WorkspaceNotUpdated Warning, so a resync repeats none."""


@dataclass(frozen=True)
class PodOutcome:
    """The Pod as it stands after a reconcile, the restart count it implies, and the Events
    (type, reason, message) to post about what was done."""

    pod: Obj | None
    restarts: int
    events: tuple[tuple[str, str, str], ...] = ()


def reported_problem(status: Obj) -> tuple[str, str] | None:
    """(reason, message) of the credentials problem a status reports, if it reports one."""
    condition = find_condition(status, "CredentialsReady") or {}
    if condition.get("status") != "False":
        return None
    return condition["reason"], condition.get("message", "")


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
        self._memory: dict[tuple[str, str, str], _Memory] = {}
        self._retries: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns = itertools.count()  # reconciles in the order they start: their urgency rank

    def _memory_of(self, ref: AgentRef) -> _Memory:
        return self._memory.setdefault(ref.key, _Memory())

    async def agent_seen(self, body: Obj) -> None:
        """An Agent event (the first listing's included): take on each generation once.

        Status and metadata changes (this operator's own status writes among them) come back as
        events too; they change no generation and start nothing.
        """
        ref = agent_ref(body)
        memory = self._memory_of(ref)
        if body["metadata"].get("deletionTimestamp") or memory.generation == ref.generation:
            return
        memory.generation = ref.generation
        await self.attempt(body)

    async def attempt(self, body: Obj) -> None:
        """Reconcile, and when that has to wait or fails, try again later on our own."""
        ref = agent_ref(body)
        try:
            await self.reconcile(body)
        except kopf.TemporaryError as error:
            logger.info("Agent %s/%s waits: %s", ref.namespace, ref.name, error)
            self._retry_later(ref, error.delay or self.settings.retry_delay)
        except KubeError as error:
            logger.warning("reconciling Agent %s/%s failed: %s", ref.namespace, ref.name, error)
            self._retry_later(ref, self.settings.retry_delay)
        except Exception:  # a bug, or a spec the API server let through: the others go on
            logger.exception("reconciling Agent %s/%s failed", ref.namespace, ref.name)
            self._retry_later(ref, self.settings.resync_interval)
        else:
            self._cancel_retry(ref.key)

    def forget(self, body: Obj) -> None:
        """The Agent is gone: drop what is remembered of it and any retry."""
        key = agent_ref(body).key
        self._cancel_retry(key)
        self._memory.pop(key, None)

    def close(self) -> None:
        """Stop every pending retry."""
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for task in self._tasks:
            task.cancel()

    def _retry_later(self, ref: AgentRef, delay: float) -> None:
        self._cancel_retry(ref.key)
        loop = asyncio.get_running_loop()
        self._retries[ref.key] = loop.call_later(delay, self._start_retry, ref)

    def _cancel_retry(self, key: tuple[str, str, str]) -> None:
        if handle := self._retries.pop(key, None):
            handle.cancel()

    def _start_retry(self, ref: AgentRef) -> None:
        self._retries.pop(ref.key, None)
        task = asyncio.create_task(self._retry(ref), name=f"retry {ref.namespace}/{ref.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, ref: AgentRef) -> None:
        try:
            fresh = await self.kube.get(self._agent_path(ref))
        except KubeError as error:
            logger.warning("reading Agent %s/%s failed: %s", ref.namespace, ref.name, error)
            self._retry_later(ref, self.settings.retry_delay)
            return
        if fresh is None or fresh["metadata"]["uid"] != ref.uid:
            return  # deleted meanwhile
        await self.attempt(fresh)

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
        previous = self._status_of(ref, body)
        # The Pod first, its requests ahead of every other Agent's follow-ups: the kubelet waits
        # for the objects it names to appear. Only its NetworkPolicy comes before it, so that no
        # sandbox ever runs open. An Agent with no status yet is new: its CA Secret and Pod are
        # created straight away (a conflict falls back to reading). Earlier reconciles go first.
        with kube.urgent(next(self._turns)):
            (ca, stub_values), problem, _ = await asyncio.gather(
                self._ensure_ca(ref, spec, new=not previous),
                self._check_credentials(ref, spec),
                self.kube.apply(objects.network_policy(ref, self.settings)),
            )
            outcome = await self._ensure_pod(
                ref, spec, stub_values, previous=previous, problem=problem
            )
        events = [*outcome.events]
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
        )
        if problem:
            raise kopf.TemporaryError(problem[1], delay=self.settings.retry_delay)
        return written

    async def observe_pod(self, body: Obj, pod: Obj, *, deleted: bool) -> None:
        """A sandbox Pod changed: refresh the status; a Pod that is gone or failed is replaced."""
        if deleted or pod.get("status", {}).get("phase") == "Failed":
            await self.attempt(body)
            return
        ref = agent_ref(body)
        if pod["metadata"].get("deletionTimestamp"):
            return  # its deletion event follows
        async with self._lock(ref):
            previous = self._status_of(ref, body)
            problem = reported_problem(previous)
            spec = AgentSpec.model_validate(body["spec"])
            # The body may predate the last reconcile's status: leave restarts to reconciles.
            await self._write_status(
                ref, spec, pod, restarts=None, problem=problem, previous=previous, body=body
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
        body: Obj,
    ) -> Obj:
        """Patch the status subresource, unless previous (the status as it stands, body's or the
        one last written) already says exactly this.

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
            patched = await self.kube.patch(self._agent_path(ref, "status"), {"status": written})
            memory = self._memory_of(ref)
            known = memory.written
            stale = [*known.stale, known.version] if known else []
            if base := body["metadata"].get("resourceVersion"):
                stale.append(base)
            version = str(patched.get("metadata", {}).get("resourceVersion", ""))
            memory.written = _Written(
                status=patched.get("status") or {**previous, **written},
                version=version,
                stale=[v for v in stale if v != version][-STALE_VERSIONS:],
            )
        return written

    def _status_of(self, ref: AgentRef, body: Obj) -> Obj:
        """The Agent's status: body's, unless body predates this operator's last status write."""
        memory = self._memory.get(ref.key)
        known = memory.written if memory else None
        version = body["metadata"].get("resourceVersion")
        if known is not None and version in known.stale:
            return known.status
        status: Obj = body.get("status") or {}
        return status

    def forget_all_but(self, agents: list[Obj]) -> None:
        """Drop what is remembered of Agents not among these (the resync's complete list)."""
        keep = {agent_ref(a).key for a in agents}
        for key in [k for k in self._memory if k not in keep]:
            del self._memory[key]

    async def _ensure_ca(
        self, ref: AgentRef, spec: AgentSpec, *, new: bool
    ) -> tuple[pki.KeyPair, dict[str, str]]:
        """The Agent's CA and stubs: made once, kept; new credentials get new stubs.

        new: the Agent has no status yet, so its CA Secret most likely does not exist: create it
        without reading first.
        """
        path = kube.path("v1", "secrets", ref.namespace, ref.ca_secret)
        secret = None if new else await self.kube.get(path)
        if secret is None:
            ca = pki.new_ca(f"paddock agent {ref.namespace}/{ref.name}")
            values = stubs.reconcile_stubs(spec, {})
            try:
                await self.kube.create(objects.ca_secret(ref, ca, values))
                return ca, values
            except ConflictError:  # made before (a reconcile cut short): keep that one
                secret = await self.kube.get(path)
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
            memory = self._memory_of(ref)
            if memory.workspace_warning != said:
                memory.workspace_warning = said
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
    ) -> PodOutcome:
        path = kube.path("v1", "pods", ref.namespace, ref.pod)
        restarts = int(previous.get("restarts", 0))
        wanted = not (spec.suspend or problem)
        # No Pod in the last status: most likely there is none now, so try to create it first.
        create_first = wanted and not previous.get("podName")
        existing = None if create_first else await self.kube.get(path)
        if existing is None and wanted:
            if previous.get("podName"):
                restarts += 1  # it was there last time and nobody here removed it
            desired = render_pod(ref, spec, self.settings, stub_values)
            try:
                created = await self.kube.create(desired)
            except ConflictError:  # only when create_first: restarts is as it was
                existing = await self.kube.get(path)
                if existing is None:  # gone again in between: its deletion event brings us back
                    return PodOutcome(None, restarts)
            else:
                event = ("Normal", "PodCreated", f"created {ref.pod}")
                return PodOutcome(created, restarts, (event,))
        if existing is None:
            return PodOutcome(None, restarts)
        meta = existing["metadata"]
        if meta.get("deletionTimestamp"):
            return PodOutcome(None, restarts)  # its deletion event brings us back
        why = self._replace_reason(existing, spec)
        if why is None:
            return PodOutcome(existing, restarts)
        restarts += why == "PodFailed"
        await self.kube.delete(path, uid=meta["uid"])
        return PodOutcome(None, restarts, (("Normal", "PodDeleted", f"deleted {ref.pod}: {why}"),))

    def _replace_reason(self, existing: Obj, spec: AgentSpec) -> str | None:
        if spec.suspend:
            return "Suspended"
        if existing.get("status", {}).get("phase") == "Failed":
            return "PodFailed"
        annotations = existing["metadata"].get("annotations") or {}
        if annotations.get(SPEC_HASH) != spec_hash(spec, self.settings):
            return "SpecChanged"
        return None
