"""Suspended Agents: a message never resumes one a person suspended.

The test plays the operator: it makes Agents Ready by writing their status.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from paddock_gateway.client import GatewayClient
from paddock_testing.apiserver import ApiServer
from paddock_testing.sessions import collect_turn

pytestmark = pytest.mark.apiserver

TIMEOUT = 90


@dataclass(frozen=True)
class World:
    """A gateway, a runner that Agents are made Ready at, and a namespace for the Agents."""

    gateway: str
    runner: str
    agents: Any
    token: str

    def client(self, agent: str) -> GatewayClient:
        return GatewayClient([self.gateway], self.token, self.agents.namespace, agent)

    def sessions(self, agent: str) -> str:
        return f"{self.gateway}/v1/namespaces/{self.agents.namespace}/agents/{agent}/sessions"


@pytest.fixture(scope="module")
def world(
    apiserver: ApiServer, module_processes: Any, gateway_env: dict[str, str], agents_in: Any
) -> World:
    namespace = f"idle-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", namespace)
    runner, _ = module_processes.runner()
    gateway, _ = module_processes.gateway(gateway_env)
    return World(gateway, runner, agents_in(namespace), apiserver.token)


async def post(world: World, agent: str, session: str, content: str) -> httpx.Response:
    """POST a message as a client would; the answer as it came."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {world.token}"}) as http:
        message = {"id": uuid.uuid4().hex, "content": content}
        return await http.post(f"{world.sessions(agent)}/{session}/messages", json=message)


@pytest.mark.asyncio
async def test_an_agent_suspended_by_spec_refuses_a_message_with_409_and_queues_nothing(
    world: World, apiserver: ApiServer
) -> None:
    name = world.agents.create("paused", idle_after="10s", suspend=True)
    namespace = world.agents.namespace
    client = world.client(name)
    try:
        session = (await client.create_session())["id"]
        refused = await post(world, name, session, "are you there?")
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "suspended by spec.suspend: true" in detail
        assert "a message does not resume it" in detail
        resume = ["patch", "agent", name, "-n", namespace, "--type", "merge"]
        unsuspend = '{"spec":{"suspend":false}}'
        assert f"kubectl {' '.join(resume)} -p '{unsuspend}'" in detail
        assert world.agents.last_activity(name) is None

        # The person resumes it as the answer says; the refused message never runs.
        apiserver.kubectl(*resume, "-p", unsuspend)
        world.agents.set_ready(name, world.runner)
        turn = await client.send(session, "after the resume")
        events = await asyncio.wait_for(collect_turn(client.events(session), turn), TIMEOUT)
    finally:
        await client.aclose()
    said = [e.data["data"]["content"] for e in events if e.type == "user_message"]
    assert said == ["after the resume"]
    assert "history 1" in [e.data["data"]["text"] for e in events if e.type == "output"]
