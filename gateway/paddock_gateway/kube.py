"""The few Kubernetes API calls the gateway makes, over httpx with its own bearer token."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from paddock.api.agent import GROUP, PLURAL, VERSION, AgentStatus, duration_seconds
from paddock.kubeobj import rfc3339
from paddock_gateway.errors import AgentNotFoundError, UnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class User:
    """An authenticated caller, as TokenReview describes it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentState:
    """What the gateway reads of an Agent: its status, spec.suspend and spec.lifecycle.idleAfter."""

    status: AgentStatus
    suspended: bool
    """spec.suspend: a person suspended it; only a person resumes it."""
    idle_after: float | None
    """spec.lifecycle.idleAfter in seconds; None: the Agent never suspends by itself."""

    @property
    def idle_suspended(self) -> bool:
        """Suspended by the operator for being idle: the next activity wakes it."""
        return self.status.idle_suspend_time is not None and not self.suspended

    @property
    def waking(self) -> bool:
        """Woken from an idle suspend and not Ready yet (the operator clears wakeTime then)."""
        return self.status.wake_time is not None and not self.suspended

    @property
    def tracks_activity(self) -> bool:
        """Whether the operator reads status.lastActivityTime of this Agent at all."""
        return self.idle_after is not None or self.status.idle_suspend_time is not None


class _FileToken(httpx.Auth):
    """Bearer auth from a file read on each request, so a rotated token is picked up."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def auth_flow(self, request: httpx.Request) -> Any:
        token = self.path.read_text().strip()
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


class GatewayKubeClient:
    """TokenReview, SubjectAccessReview, reading Agents and recording their activity."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, url: str, token_file: Path, ca_file: Path | None) -> GatewayKubeClient:
        """A client for `url` that authenticates with the token in `token_file`."""
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        client = httpx.AsyncClient(
            base_url=url, auth=_FileToken(token_file), verify=context, timeout=10.0
        )
        return cls(client)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def review_token(self, token: str, audiences: list[str]) -> User | None:
        """Who the token belongs to, or None when the API server does not accept it."""
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        status = (await self._post("/apis/authentication.k8s.io/v1/tokenreviews", body))["status"]
        if not status.get("authenticated"):
            return None
        user = status.get("user", {})
        return User(
            username=user.get("username", ""),
            uid=user.get("uid", ""),
            groups=tuple(user.get("groups", [])),
            extra=user.get("extra", {}),
        )

    async def may_connect(self, user: User, namespace: str, agent: str) -> bool:
        """Whether `user` may `connect` to agents.paddock.dev `agent` in `namespace`."""
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.username,
                "uid": user.uid,
                "groups": list(user.groups),
                "extra": user.extra,
                "resourceAttributes": {
                    "group": GROUP,
                    "resource": PLURAL,
                    "verb": "connect",
                    "namespace": namespace,
                    "name": agent,
                },
            },
        }
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        status = (await self._post(path, body))["status"]
        return bool(status.get("allowed")) and not status.get("denied")

    async def agent(self, namespace: str, name: str) -> AgentState:
        """The Agent as the gateway needs it; AgentNotFoundError when there is no such Agent."""
        response = await self._send("GET", _agent_path(namespace, name), agent=(namespace, name))
        return _agent_state(response.json())

    async def record_activity(self, namespace: str, name: str, when: datetime) -> None:
        """Set status.lastActivityTime (a merge patch of the status subresource only)."""
        await self._send(
            "PATCH", f"{_agent_path(namespace, name)}/status", agent=(namespace, name),
            json={"status": {"lastActivityTime": rfc3339(when)}},
            headers={"Content-Type": "application/merge-patch+json"},
        )  # fmt: skip

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = (await self._send("POST", path, json=body)).json()
        return answer

    async def _send(
        self, method: str, path: str, *, agent: tuple[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """The API server's answer; UnavailableError when there is none or it refuses, and
        AgentNotFoundError for a 404 about `agent` (namespace, name)."""
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise UnavailableError(f"Kubernetes API unreachable: {error}") from error
        if agent is not None and response.status_code == 404:
            raise AgentNotFoundError(f"agent {agent[0]}/{agent[1]} not found")
        _check(response)
        return response


def _agent_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def _agent_state(agent: dict[str, Any]) -> AgentState:
    spec = agent.get("spec") or {}
    idle_after: float | None = None
    if text := (spec.get("lifecycle") or {}).get("idleAfter"):
        try:
            idle_after = duration_seconds(text)
        except ValueError:  # the API server checks it; an older CRD may not have
            log.warning("agent %s: spec.lifecycle.idleAfter %r ignored", _name(agent), text)
    return AgentState(
        status=AgentStatus.model_validate(agent.get("status") or {}),
        suspended=bool(spec.get("suspend")),
        idle_after=idle_after,
    )


def _name(agent: dict[str, Any]) -> str:
    meta = agent.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise UnavailableError(
            f"Kubernetes API answered {response.status_code} to {response.request.url.path}: "
            f"{response.text[:300]}"
        )
