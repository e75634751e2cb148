"""FastAPI dependencies, read as types: who calls, on which Agent, with which store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from paddock_gateway.kube import User
from paddock_gateway.state import Gateway
from paddock_gateway.store import Store

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def get_gateway(request: Request) -> Gateway:
    """The process's parts."""
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayState = Annotated[Gateway, Depends(get_gateway)]


def get_store(gateway: GatewayState) -> Store:
    """The session store."""
    return gateway.store


SessionStore = Annotated[Store, Depends(get_store)]


async def get_caller(
    gateway: GatewayState,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> User:
    """The authenticated caller (401 without a valid bearer token)."""
    return await gateway.access.authenticate(authorization)


Caller = Annotated[User, Depends(get_caller)]

Namespace = Annotated[str, Path(min_length=1, max_length=63, pattern=_DNS_LABEL)]
AgentName = Annotated[str, Path(min_length=1, max_length=63, pattern=_DNS_LABEL)]
SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


@dataclass(frozen=True)
class PermittedAgent:
    """An Agent the caller may `connect` to, and that exists."""

    namespace: str
    name: str


async def get_agent(
    namespace: Namespace, agent: AgentName, caller: Caller, gateway: GatewayState
) -> PermittedAgent:
    """Authorize `connect` on the Agent (403), then check that it exists (404)."""
    await gateway.access.authorize(caller, namespace, agent)
    await gateway.agents.check_exists(namespace, agent)
    return PermittedAgent(namespace, agent)


AllowedAgent = Annotated[PermittedAgent, Depends(get_agent)]
