"""The periodic resync, driven directly: it repairs what no event announced."""

from __future__ import annotations

from typing import Any

import pytest

from paddock_operator.kube.client import KubeClient
from paddock_operator.names import AgentRef
from paddock_operator.reconcile import Reconciler
from paddock_operator.resync import resync_once
from paddock_operator.scheduling import Scheduler
from paddock_operator.settings import OperatorSettings
from paddock_testing.agents import minimal_agent
from paddock_testing.apiserver import ApiServer
from paddock_testing.cluster import Cluster

pytestmark = pytest.mark.apiserver


def admin_client(server: ApiServer) -> KubeClient:
    return KubeClient(server.url, ssl_context=server.ssl_context(), headers=server.admin_headers)


def scheduler_of(apiserver: ApiServer) -> Scheduler:
    return Scheduler(Reconciler(admin_client(apiserver), OperatorSettings()))


@pytest.mark.asyncio
async def test_resync_recreates_what_was_lost_while_nobody_watched(
    apiserver: ApiServer, cluster: Cluster
) -> None:
    agent = {
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "quiet"},
        "spec": {
            "harness": {"image": "paddock/harness:0.1.0"},
            "model": {"engine": "external", "models": [{"name": "m"}], "default": "m",
                      "external": {"baseURL": "https://llm.example.com/v1", "credential": "KEY"}},
            "credentials": [{"name": "KEY", "secretRef": {"name": "key", "key": "v"},
                             "hosts": ["llm.example.com"]}],
        },
    }  # fmt: skip
    cluster.apply(cluster.secret("key", v="real"), agent)
    scheduler = scheduler_of(apiserver)
    try:
        assert await resync_once(scheduler, [cluster.namespace]) == 1
        assert cluster.pod("quiet") is not None
        assert cluster.agent_status("quiet")["phase"] == "Pending"  # no kubelet here yet
        cluster.kubectl("delete", "pod", "quiet-sandbox", "--grace-period=0", "--force")
        await resync_once(scheduler, [cluster.namespace])
        assert cluster.pod("quiet") is not None
        assert cluster.agent_status("quiet")["restarts"] == 1
        agent_now = cluster.get("agent", "quiet") or {}
        assert not agent_now["metadata"].get("finalizers"), "an Agent must stay deletable"
    finally:
        scheduler.close()
        await scheduler.kube.aclose()


@pytest.mark.asyncio
async def test_a_workspace_change_the_api_server_refuses_is_one_warning(
    apiserver: ApiServer, cluster: Cluster
) -> None:
    agent = minimal_agent("shrunk")
    agent["spec"]["workspace"] = {"size": "2Gi"}
    cluster.apply(cluster.secret("token", v="real"), agent)
    scheduler = scheduler_of(apiserver)
    try:
        await resync_once(scheduler, [cluster.namespace])
        agent["spec"]["workspace"] = {"size": "1Gi"}  # a claim cannot shrink
        cluster.apply(agent)
        for _ in range(3):  # what three resyncs would do
            await resync_once(scheduler, [cluster.namespace])
        assert cluster.warnings("shrunk") == {"WorkspaceNotUpdated": 1}
        claim = cluster.get("pvc", "shrunk-workspace") or {}
        assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    finally:
        scheduler.close()
        await scheduler.kube.aclose()


class BrokenFor(Reconciler):
    """A reconciler with a bug that only one Agent's spec sets off."""

    def __init__(self, kube: KubeClient, broken: str) -> None:
        super().__init__(kube, OperatorSettings())
        self.broken = broken

    async def reconcile(self, ref: AgentRef, body: dict[str, Any]) -> dict[str, Any]:
        if ref.name == self.broken:
            raise RuntimeError("a bug this Agent sets off")
        return await super().reconcile(ref, body)


@pytest.mark.asyncio
async def test_one_agent_that_breaks_the_reconciler_does_not_stop_the_others(
    apiserver: ApiServer, cluster: Cluster
) -> None:
    cluster.apply(cluster.secret("token", v="real"), minimal_agent("broken"), minimal_agent("fine"))
    scheduler = Scheduler(BrokenFor(admin_client(apiserver), "broken"))
    try:
        assert await resync_once(scheduler, [cluster.namespace]) == 2
        assert cluster.pod("fine") is not None
        assert cluster.pod("broken") is None
        assert await resync_once(scheduler, [cluster.namespace]) == 2  # and the next round too
    finally:
        scheduler.close()
        await scheduler.kube.aclose()
