"""kopf handlers: thin wiring from events to paddock_operator.reconcile.Reconciler."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from paddock.api import agent as api
from paddock_operator import kube
from paddock_operator.kube import Kube
from paddock_operator.names import AGENT_LABEL
from paddock_operator.reconcile import Reconciler
from paddock_operator.settings import OperatorSettings

AGENTS = (api.GROUP, api.VERSION, api.PLURAL)
# Read once at import for the timer's interval; handlers use the settings made at startup.
RESYNC_INTERVAL = OperatorSettings().resync_interval


def _reconciler(memo: kopf.Memo) -> Reconciler:
    reconciler: Reconciler = memo["reconciler"]
    return reconciler


def _credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else $KUBECONFIG or ~/.kube/config (read at call time)."""
    return _credentials(settings)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf and log in the operator's own API client."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="paddock.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="paddock.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    ours = OperatorSettings()
    settings.execution.max_workers = ours.workers
    settings.queueing.worker_limit = ours.workers
    logging.getLogger("httpx").setLevel(logging.WARNING)
    info = _credentials(settings)
    if info is None:
        raise kopf.PermanentError("no in-cluster service account and no kubeconfig to log in with")
    memo["reconciler"] = Reconciler(Kube.from_connection(info), ours)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close the API client."""
    if "reconciler" in memo:
        await _reconciler(memo).kube.aclose()


@kopf.on.resume(*AGENTS)
@kopf.on.create(*AGENTS)
@kopf.on.update(*AGENTS)
async def agent_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Agent appeared, changed, or was there when the operator started."""
    await _reconciler(memo).reconcile(dict(body))


@kopf.timer(*AGENTS, interval=RESYNC_INTERVAL, initial_delay=RESYNC_INTERVAL)
async def agent_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Re-check every Agent now and then, in case an event was missed."""
    await _reconciler(memo).reconcile(dict(body))


@kopf.on.event("pods", labels={AGENT_LABEL: kopf.PRESENT})
async def pod_event(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """A sandbox Pod changed or went away: update its Agent's status, recreate it if needed."""
    namespace = body.metadata.namespace
    owners = [o for o in body.metadata.get("ownerReferences", []) if o.get("kind") == api.KIND]
    if not owners or namespace is None:
        return
    reconciler = _reconciler(memo)
    agent = await reconciler.kube.get(
        kube.path(api.API_VERSION, api.PLURAL, namespace, owners[0]["name"])
    )
    if agent is None or agent["metadata"]["uid"] != owners[0].get("uid"):
        return
    try:
        await reconciler.reconcile(agent)
    except kopf.TemporaryError as error:
        # Event handlers are not retried; the Agent's own handlers and the resync are.
        logger.info("Agent %s/%s waits: %s", namespace, owners[0]["name"], error)
