"""kopf handlers: thin wiring from events to paddock_operator.scheduling.Scheduler."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf

from paddock.api import agent as api
from paddock_operator.kube.client import SERVICE_ACCOUNT_TOKEN, KubeClient
from paddock_operator.kube.errors import KubeError
from paddock_operator.metrics import OperatorMetrics
from paddock_operator.metrics import serve as serve_metrics
from paddock_operator.names import AGENT_LABEL
from paddock_operator.reconcile import Reconciler
from paddock_operator.resync import resync_forever
from paddock_operator.scheduling import Scheduler
from paddock_operator.settings import OperatorSettings
from paddock_operator.storage import NoDiffBase, NoProgress

AGENTS = (api.GROUP, api.VERSION, api.PLURAL)


def _scheduler(memo: kopf.Memo) -> Scheduler:
    scheduler: Scheduler = memo["scheduler"]
    return scheduler


def _credentials(settings: kopf.OperatorSettings) -> tuple[kopf.ConnectionInfo | None, Path | None]:
    """In-cluster service account, else $KUBECONFIG or ~/.kube/config (read at call time); and
    the token file to re-read, in-cluster, where the kubelet rotates the projected token."""
    in_cluster = kopf.login_with_service_account(settings=settings)
    if in_cluster is not None:
        return in_cluster, SERVICE_ACCOUNT_TOKEN
    return kopf.login_with_kubeconfig(settings=settings), None


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """kopf's own client logs in the same way as ours."""
    return _credentials(settings)[0]


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf and log in the operator's own API client."""
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = NoProgress()
    # kopf's own "handler succeeded" chatter stays in the log; our Events are posted explicitly.
    settings.posting.level = logging.WARNING
    ours = OperatorSettings()
    # No limit on kopf's per-object workers: a worker waits until the Agent index is complete,
    # so a limit below the number of Agents deadlocks the operator at start-up.
    settings.queueing.worker_limit = None
    # Only sandbox Pods on the wire: the handler's label filter alone would still have the API
    # server send every Pod of the cluster, each one parsed and queued here.
    settings.watching.label_selectors["pods"] = AGENT_LABEL
    info, token_file = _credentials(settings)
    if info is None:
        raise kopf.PermanentError("no in-cluster service account and no kubeconfig to log in with")
    metrics = OperatorMetrics()
    client = KubeClient.from_connection(
        info,
        in_flight=ours.api_requests_in_flight,
        token_file=token_file,
        observe=metrics.api_request,
    )
    scheduler = Scheduler(Reconciler(client, ours, metrics))
    memo["scheduler"] = scheduler
    if ours.metrics_port:
        memo["metrics"] = await serve_metrics(metrics, ours.metrics_host, ours.metrics_port)
    namespaces = list(memo.get("namespaces", []))
    memo["resync"] = asyncio.create_task(
        resync_forever(scheduler, namespaces, ours.resync_interval), name="paddock-resync"
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close the API client."""
    if "resync" in memo:
        memo["resync"].cancel()
    if "metrics" in memo:
        await memo["metrics"].cleanup()
    if "scheduler" in memo:
        _scheduler(memo).close()
        await _scheduler(memo).kube.aclose()


@kopf.on.event(*AGENTS)
async def agent_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Agent appeared (type None: it was there when the operator started), changed or went.

    A low-level handler, not kopf's on.create/on.update: those store each handled spec in an
    annotation, one more write per change. The scheduler takes on each generation once and
    retries on its own; the garbage collector removes what a deleted Agent owned.
    """
    if type == "DELETED":
        _scheduler(memo).forget(dict(body))
    else:
        await _scheduler(memo).agent_seen(dict(body))


@kopf.index(*AGENTS)
def agents_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The latest body of every Agent, so Pod events need no extra read."""
    return {(namespace, name): dict(body)}


@kopf.on.event("pods", labels={AGENT_LABEL: kopf.PRESENT})
async def pod_event(
    type: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    agents_index: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> None:
    """A sandbox Pod changed or went away: update its Agent's status, recreate it if needed."""
    namespace = body.metadata.namespace
    owners = [o for o in body.metadata.get("ownerReferences", []) if o.get("kind") == api.KIND]
    if not owners or namespace is None or agents_index is None:
        return
    found = [a for a in agents_index.get((namespace, owners[0]["name"]), []) if a]
    agent = found[0] if found else None
    if agent is None or agent["metadata"]["uid"] != owners[0].get("uid"):
        return
    try:
        await _scheduler(memo).observe_pod(agent, dict(body), deleted=type == "DELETED")
    except KubeError as error:  # a status write failed; the Pod's next event or the resync redo it
        logger.warning("status of Agent %s/%s: %s", namespace, owners[0]["name"], error)
