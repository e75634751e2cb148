"""Periodic resync: reconcile every Agent now and then, in case an event was missed.

A loop of the operator's own rather than a kopf timer: kopf guards timers with a finalizer on every
Agent, and a finalizer would keep Agents from being deleted while the operator is down.
"""

from __future__ import annotations

import asyncio
import logging

from paddock.api import agent as api
from paddock.kubeobj import Obj
from paddock_operator.kube.errors import KubeError
from paddock_operator.kube.paths import path
from paddock_operator.scheduling import Scheduler

logger = logging.getLogger(__name__)


async def resync_once(scheduler: Scheduler, namespaces: list[str], *, parallel: int = 8) -> int:
    """Reconcile every Agent in namespaces (all when empty) once; return how many were seen."""
    collections = [path(api.API_VERSION, api.PLURAL, ns) for ns in namespaces] or [
        path(api.API_VERSION, api.PLURAL)
    ]
    agents = [agent for url in collections for agent in await scheduler.kube.list(url)]
    scheduler.forget_all_but(agents)  # every Agent the operator watches: the rest are gone
    gate = asyncio.Semaphore(parallel)

    async def one(body: Obj) -> None:
        async with gate:
            await scheduler.attempt(body)  # what has to wait is retried by the scheduler

    await asyncio.gather(*(one(a) for a in agents))
    return len(agents)


async def resync_forever(scheduler: Scheduler, namespaces: list[str], interval: float) -> None:
    """Resync every interval seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await resync_once(scheduler, namespaces)
        except KubeError as error:  # the API server is unwell: try again next round
            logger.warning("resync failed: %s", error)
