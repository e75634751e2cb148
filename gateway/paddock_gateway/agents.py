"""Agents as the gateway sees them: whether one exists, and where its runner is when Ready."""

from __future__ import annotations

from paddock.api.agent import AgentStatus
from paddock_gateway.access import TtlCache
from paddock_gateway.kube import AgentState, GatewayKubeClient


def ready_endpoint(status: AgentStatus) -> str | None:
    """The runner's URL if the Agent is Ready (condition Ready=True) and has one."""
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
    return status.endpoint if ready and status.endpoint else None


class Agents:
    """Reads Agents through the Kubernetes API; existence answers are cached briefly."""

    def __init__(self, kube: GatewayKubeClient, cache_seconds: float) -> None:
        self.kube = kube
        self._known: TtlCache[tuple[str, str], bool] = TtlCache(cache_seconds)

    async def check_exists(self, namespace: str, name: str) -> None:
        """Return if the Agent exists; AgentNotFoundError otherwise."""
        if self._known.get((namespace, name)):
            return
        await self.read(namespace, name)

    async def read(self, namespace: str, name: str) -> AgentState:
        """The Agent now (never cached); AgentNotFoundError if there is none."""
        state = await self.kube.agent(namespace, name)
        self._known.put((namespace, name), True)
        return state

    async def endpoint(self, namespace: str, name: str) -> str | None:
        """The runner's URL now, or None while the Agent is not Ready."""
        return ready_endpoint((await self.read(namespace, name)).status)


def suspended_by_spec(namespace: str, name: str) -> str:
    """Why a message to an Agent a person suspended is refused, and how to resume it."""
    return (
        f"agent {namespace}/{name} is suspended by spec.suspend: true, and a message does not "
        f"resume it; resume it with: kubectl patch agent {name} -n {namespace} --type merge "
        """-p '{"spec":{"suspend":false}}'"""
    )
