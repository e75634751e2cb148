"""When an Agent is reconciled: each generation once, one reconcile per Agent at a time, and again
later, on the operator's own timer, when a reconcile has to wait or fails.

What one reconcile does is paddock_operator.reconcile; this module only decides when it runs.
Each Agent generation is taken on once (agent_seen): the operator writes nothing to the Agent but
its status, so kopf's change-detection annotation (a second write per change) is not used.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import kopf

from paddock.kubeobj import Obj
from paddock_operator.idle import wakes
from paddock_operator.kube.client import KubeClient
from paddock_operator.kube.errors import KubeError
from paddock_operator.memory import AgentKey
from paddock_operator.names import AgentRef
from paddock_operator.reconcile import Reconciler, agent_path
from paddock_operator.status import egress_failed

logger = logging.getLogger(__name__)

IDLE_CHECK_FLOOR = 0.1
"""Seconds: the soonest an idle check is repeated after a reconcile."""


def agent_ref(body: Obj) -> AgentRef:
    """Which Agent a body is."""
    meta = body["metadata"]
    return AgentRef(meta["name"], meta["namespace"], meta["uid"], meta.get("generation", 1))


class Scheduler:
    """Runs a Reconciler's reconciles: one per Agent at a time, retried until they succeed."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.kube: KubeClient = reconciler.kube
        self.memory = reconciler.memory
        self.metrics = reconciler.metrics
        self._settings = reconciler.settings
        # Weak: a lock lives while a reconcile holds or awaits it, not for every Agent ever seen.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._retries: dict[AgentKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def agent_seen(self, body: Obj) -> None:
        """An Agent event (the first listing's included): take on each generation once.

        Status and metadata changes (this operator's own status writes among them) come back as
        events too; they change no generation and start nothing, except the gateway's activity
        on an Agent suspended for being idle, which wakes it.
        """
        ref = agent_ref(body)
        memory = self.memory.of(ref)
        if body["metadata"].get("deletionTimestamp"):
            return
        if memory.generation == ref.generation and not wakes(body):
            return
        memory.generation = ref.generation
        await self.attempt(body)

    async def attempt(self, body: Obj) -> None:
        """Reconcile, and when that has to wait or fails, try again later on our own."""
        ref = agent_ref(body)
        started = time.monotonic()
        outcome = "ok"
        try:
            await self.reconcile(body)
        except kopf.TemporaryError as error:
            outcome = "wait"
            logger.info("Agent %s/%s waits: %s", ref.namespace, ref.name, error)
            self._retry_later(ref, error.delay or self._settings.retry_delay)
        except KubeError as error:
            outcome = "error"
            logger.warning("reconciling Agent %s/%s failed: %s", ref.namespace, ref.name, error)
            self._retry_later(ref, self._settings.retry_delay)
        except Exception:  # a bug, or a spec the API server let through: the others go on
            outcome = "bug"
            logger.exception("reconciling Agent %s/%s failed", ref.namespace, ref.name)
            self._retry_later(ref, self._settings.resync_interval)
        else:
            check = self.memory.of(ref).idle_check
            if check is None:
                self._cancel_retry(ref.key)
            else:  # a floor, so that a mistake here cannot become a busy loop
                self._retry_later(ref, max(check, IDLE_CHECK_FLOOR))
        self.metrics.reconciles.labels(outcome).observe(time.monotonic() - started)

    async def reconcile(self, body: Obj) -> Obj:
        """Reconcile one Agent under its lock; return the status written."""
        ref = agent_ref(body)
        lock = self._lock(ref)
        if lock.locked():  # another reconcile ran meanwhile: the body may be stale
            async with lock:
                fresh = await self.kube.get(agent_path(ref))
                if fresh is None or fresh["metadata"]["uid"] != ref.uid:
                    return {}  # deleted: the garbage collector takes the rest
                return await self.reconciler.reconcile(agent_ref(fresh), fresh)
        async with lock:
            return await self.reconciler.reconcile(ref, body)

    async def observe_pod(self, body: Obj, pod: Obj, *, deleted: bool) -> None:
        """A sandbox Pod changed: refresh the status; a Pod that is gone, failed, or whose egress
        the node did not set up is replaced."""
        if deleted or pod.get("status", {}).get("phase") == "Failed" or egress_failed(pod):
            await self.attempt(body)
            return
        ref = agent_ref(body)
        if pod["metadata"].get("deletionTimestamp"):
            return  # its deletion event follows
        async with self._lock(ref):
            await self.reconciler.refresh_status(ref, body, pod)
        check = self.memory.of(ref).idle_check
        if check is not None and check <= 0:
            await self.attempt(body)  # idle long enough (or woken) while the Pod changed
        elif check is not None and ref.key not in self._retries:
            self._retry_later(ref, check)  # a pending retry reconciles, and looks again, sooner

    def forget(self, body: Obj) -> None:
        """The Agent is gone: drop what is remembered of it and any retry."""
        key = agent_ref(body).key
        self._cancel_retry(key)
        self.memory.forget(key)

    def forget_all_but(self, agents: list[Obj]) -> None:
        """Drop what is remembered of Agents not among these (the resync's complete list)."""
        self.memory.forget_all_but(agent_ref(a).key for a in agents)

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

    def _cancel_retry(self, key: AgentKey) -> None:
        if handle := self._retries.pop(key, None):
            handle.cancel()

    def _start_retry(self, ref: AgentRef) -> None:
        self._retries.pop(ref.key, None)
        task = asyncio.create_task(self._retry(ref), name=f"retry {ref.namespace}/{ref.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, ref: AgentRef) -> None:
        try:
            fresh = await self.kube.get(agent_path(ref))
        except KubeError as error:
            logger.warning("reading Agent %s/%s failed: %s", ref.namespace, ref.name, error)
            self._retry_later(ref, self._settings.retry_delay)
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
