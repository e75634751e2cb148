"""Who may talk to which Agent: TokenReview, then SubjectAccessReview, answers cached briefly."""

from __future__ import annotations

import hashlib
import time
from typing import Generic, TypeVar

from paddock_gateway.errors import ForbiddenError, UnauthenticatedError, UnavailableError
from paddock_gateway.kube import GatewayKubeClient, User
from paddock_gateway.metrics import Metrics

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A dict whose entries expire; bounded so a flood of bad tokens cannot grow it."""

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The value, if present and fresh."""
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        """Remember value for `seconds`."""
        if self.seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.seconds, value)


class Access:
    """Authenticate bearer tokens and authorize `connect` on Agents through the API server."""

    def __init__(
        self, kube: GatewayKubeClient, cache_seconds: float, audiences: list[str],
        metrics: Metrics | None = None,
    ) -> None:  # fmt: skip
        self.kube = kube
        self.audiences = audiences
        self.metrics = metrics or Metrics()
        self._users: TtlCache[str, User] = TtlCache(cache_seconds)
        self._decisions: TtlCache[tuple[str, str, str], bool] = TtlCache(cache_seconds)

    async def authenticate(self, authorization: str | None) -> User:
        """The caller behind an Authorization header; UnauthenticatedError when there is none."""
        try:
            return await self._authenticate(authorization)
        except UnauthenticatedError:
            self.metrics.auth("unauthenticated")
            raise
        except UnavailableError:
            self.metrics.auth("error")
            raise

    async def _authenticate(self, authorization: str | None) -> User:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("a bearer token is required (Authorization: Bearer <token>)")
        key = hashlib.sha256(token.encode()).hexdigest()
        user = self._users.get(key)
        if user is None:
            # Only valid tokens are remembered: a rejected one is asked about again.
            user = await self.kube.review_token(token, self.audiences)
            if user is None:
                raise UnauthenticatedError("the bearer token is not valid")
            self._users.put(key, user)
        return user

    async def authorize(self, user: User, namespace: str, agent: str) -> None:
        """Return if the caller may `connect` to the Agent; ForbiddenError otherwise."""
        key = (f"{user.username}\0{user.uid}\0{','.join(user.groups)}", namespace, agent)
        allowed = self._decisions.get(key)
        if allowed is None:
            try:
                allowed = await self.kube.may_connect(user, namespace, agent)
            except UnavailableError:
                self.metrics.auth("error")
                raise
            self._decisions.put(key, allowed)
        self.metrics.auth("allowed" if allowed else "forbidden")
        if not allowed:
            raise ForbiddenError(
                f'{user.username} may not "connect" to agents.paddock.dev "{agent}" '
                f'in namespace "{namespace}"'
            )
