"""The few Kubernetes API calls the gateway makes, over httpx with its own bearer token."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from paddock.api.agent import GROUP, PLURAL, VERSION, AgentStatus
from paddock_gateway.errors import AgentNotFoundError, UnavailableError


@dataclass(frozen=True)
class User:
    """An authenticated caller, as TokenReview describes it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


class _FileToken(httpx.Auth):
    """Bearer auth from a file read on each request, so a rotated token is picked up."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def auth_flow(self, request: httpx.Request) -> Any:
        token = self.path.read_text().strip()
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


class GatewayKubeClient:
    """TokenReview, SubjectAccessReview and reading Agents."""

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

    async def agent_status(self, namespace: str, name: str) -> AgentStatus:
        """The Agent's status; AgentNotFoundError when there is no such Agent."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        try:
            response = await self.client.get(path)
        except httpx.HTTPError as error:
            raise UnavailableError(f"Kubernetes API unreachable: {error}") from error
        if response.status_code == 404:
            raise AgentNotFoundError(f"agent {namespace}/{name} not found")
        _check(response)
        return AgentStatus.model_validate(response.json().get("status") or {})

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=body)
        except httpx.HTTPError as error:
            raise UnavailableError(f"Kubernetes API unreachable: {error}") from error
        _check(response)
        answer: dict[str, Any] = response.json()
        return answer


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise UnavailableError(
            f"Kubernetes API answered {response.status_code} to {response.request.url.path}: "
            f"{response.text[:300]}"
        )
