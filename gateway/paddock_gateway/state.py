"""Everything one gateway process holds, built once at start-up and shared by the routes."""

from __future__ import annotations

from dataclasses import dataclass

from paddock_gateway.access import Access
from paddock_gateway.activity import Activity
from paddock_gateway.agents import Agents
from paddock_gateway.metrics import Metrics
from paddock_gateway.runner_client import RunnerPool
from paddock_gateway.settings import GatewaySettings
from paddock_gateway.store import Store
from paddock_gateway.supervisor import Supervisor


@dataclass(frozen=True)
class Gateway:
    """The process's parts."""

    settings: GatewaySettings
    store: Store
    access: Access
    agents: Agents
    activity: Activity
    runners: RunnerPool
    supervisor: Supervisor
    metrics: Metrics
