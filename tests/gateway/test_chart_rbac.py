"""The gateway run with only the chart's RBAC: it authenticates, authorizes, serves a turn and
records an Agent's activity, and may change nothing of an Agent but its status."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from paddock_gateway.client import GatewayClient
from paddock_testing.apiserver import ApiServer
from paddock_testing.helm import render
from paddock_testing.wait import wait_for

pytestmark = pytest.mark.apiserver

SYSTEM = "paddock-system"


@dataclass(frozen=True)
class Setup:
    gateway: str
    namespace: str
    alice: str
    rules: list[dict[str, Any]]
    account: str
    """The gateway's ServiceAccount, as RBAC names it."""
    agents: Any


@pytest.fixture(scope="module")
def setup(  # noqa: PLR0917 - pytest hands fixtures in as parameters
    apiserver: ApiServer, helm: str, module_processes: Any, gateway_env: dict[str, str],
    agents_in: Any, token_in: Any, tmp_path_factory: pytest.TempPathFactory,
) -> Setup:  # fmt: skip
    apiserver.kubectl("create", "namespace", SYSTEM, check=False)  # the operator's test may have
    rbac = render(helm, "templates/gateway-rbac.yaml", namespace=SYSTEM)
    items = json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    apiserver.kubectl("apply", "-f", "-", input=items)
    account = next(d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount")
    token = apiserver.kubectl("create", "token", account, "-n", SYSTEM).stdout.strip()
    token_file = tmp_path_factory.mktemp("gateway-sa") / "token"
    token_file.write_text(token)
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", namespace)
    runner_url, _ = module_processes.runner()
    agents = agents_in(namespace)
    agents.create("alpha", runner_url)
    agents.create("beta", runner_url)
    agents.create("gamma", runner_url, idle_after="15m")
    alice = token_in(namespace, "alice", "alpha", "gamma")
    env = gateway_env | {"PADDOCK_GATEWAY_KUBE_TOKEN_FILE": str(token_file)}
    gateway, _ = module_processes.gateway(env)
    role = next(d for d in rbac if d["kind"] == "ClusterRole")
    service_account = f"system:serviceaccount:{SYSTEM}:{account}"
    return Setup(gateway, namespace, alice, role["rules"], service_account, agents)


def test_cluster_role_is_four_rules_and_no_secrets(setup: Setup) -> None:
    granted = {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in setup.rules}
    assert granted == {
        ("authentication.k8s.io", "tokenreviews"): ["create"],
        ("authorization.k8s.io", "subjectaccessreviews"): ["create"],
        ("paddock.dev", "agents"): ["get"],
        ("paddock.dev", "agents/status"): ["patch"],
    }


@pytest.mark.parametrize(
    ("verb", "subresource", "allowed"),
    [
        ("patch", "status", True),
        ("patch", "", False),
        ("update", "status", False),
        ("update", "", False),
        ("delete", "", False),
    ],
)
def test_the_gateway_may_patch_an_agents_status_and_nothing_else_of_it(
    setup: Setup, apiserver: ApiServer, verb: str, subresource: str, allowed: bool
) -> None:
    answer = apiserver.kubectl(
        "auth", "can-i", verb, "agents.paddock.dev/alpha", f"--subresource={subresource}",
        "-n", setup.namespace, f"--as={setup.account}", check=False,
    )  # fmt: skip
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


@pytest.mark.asyncio
async def test_gateway_with_the_charts_permissions_records_a_message_to_an_idle_after_agent(
    setup: Setup,
) -> None:
    client = GatewayClient([setup.gateway], setup.alice, setup.namespace, "gamma")
    try:
        session = (await client.create_session())["id"]
        await client.send(session, "hello")
    finally:
        await client.aclose()
    wait_for(lambda: setup.agents.last_activity("gamma"), "gamma's status.lastActivityTime")


@pytest.mark.asyncio
async def test_gateway_with_the_charts_permissions_serves_allowed_callers_only(
    setup: Setup,
) -> None:
    base = f"/v1/namespaces/{setup.namespace}/agents"
    auth = {"Authorization": f"Bearer {setup.alice}"}
    async with httpx.AsyncClient(base_url=setup.gateway, timeout=30) as http:
        created = await http.post(f"{base}/alpha/sessions", headers=auth)
        assert created.status_code == 201, created.text
        refused = await http.post(f"{base}/beta/sessions", headers=auth)
        assert refused.status_code == 403, refused.text
        unknown = await http.post(f"{base}/alpha/sessions", headers={"Authorization": "Bearer x"})
        assert unknown.status_code == 401, unknown.text
    session = created.json()["id"]
    client = GatewayClient([setup.gateway], setup.alice, setup.namespace, "alpha")
    try:
        turn = await client.send(session, "hello")
        async with asyncio.timeout(60):
            async for event in client.events(session):
                if event.type == "turn_end" and event.data["turn_id"] == turn:
                    break
    finally:
        await client.aclose()
