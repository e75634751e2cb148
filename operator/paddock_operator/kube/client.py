"""A small async Kubernetes API client on aiohttp: get, create, server-side apply, patch, delete.

The operator talks to the API server through this class only, and tests hand it a client built for
the real test API server. Errors come out as paddock_operator.kube.errors, keyed on the HTTP
status; requests wait their turn in a paddock_operator.kube.priority gate.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import aiohttp
import kopf

from paddock.kubeobj import Obj
from paddock_operator.kube import priority
from paddock_operator.kube.errors import KubeError, NotFoundError, UnavailableError, error_for
from paddock_operator.kube.paths import path, path_of

FIELD_MANAGER = "paddock-operator"
logger = logging.getLogger(__name__)

Observer = Callable[[str, str, int, float], None]
"""Told of every request: verb, path, HTTP status (0 when none came), seconds."""

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class KubeClient:
    """Async access to one API server with one identity, on aiohttp.

    aiohttp, not httpx: measured against the test API server, httpx (over anyio's TLS streams)
    spent 1.3 ms of CPU per request and aiohttp 0.22 ms; the operator is mostly requests.
    """

    def __init__(
        self,
        server: str,
        *,
        ssl_context: ssl.SSLContext,
        headers: dict[str, str],
        in_flight: int = 16,
        timeout: float = 30,
        token_file: Path | None = None,
        token_max_age: float = 60,
        observe: Observer | None = None,
    ) -> None:
        """Call from inside the event loop that will use it (aiohttp binds its session to it).

        token_file: a bearer token to re-read every token_max_age seconds (a projected service
        account token is rotated by the kubelet); it replaces any Authorization in headers.
        """
        self.server = server.rstrip("/")
        self._observe = observe
        self._headers = dict(headers)
        self._token_file = token_file
        self._token_max_age = token_max_age
        self._token_read: float | None = None
        connector = aiohttp.TCPConnector(limit=in_flight, ssl=ssl_context)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
        )
        # At most in_flight requests at once, urgent() ones first; the rest wait here.
        self._gate = priority.PriorityGate(in_flight)

    @classmethod
    def from_connection(
        cls,
        info: kopf.ConnectionInfo,
        *,
        in_flight: int = 16,
        timeout: float = 30,
        token_file: Path | None = None,
        observe: Observer | None = None,
    ) -> Self:
        """A client with the credentials kopf logged in with (kubeconfig or service account)."""
        context = ssl.create_default_context()
        if info.ca_path:
            context.load_verify_locations(cafile=str(info.ca_path))
        elif info.ca_data:
            data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
            context.load_verify_locations(cadata=data)
        if info.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if info.certificate_path and info.private_key_path:
            context.load_cert_chain(str(info.certificate_path), str(info.private_key_path))
        return cls(
            info.server,
            ssl_context=context,
            headers=info.as_http_headers(),
            in_flight=in_flight,
            timeout=timeout,
            token_file=token_file,
            observe=observe,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._session.close()

    def _auth_headers(self) -> dict[str, str]:
        now = time.monotonic()
        stale = self._token_read is None or now - self._token_read >= self._token_max_age
        if self._token_file is not None and stale:
            try:
                token = self._token_file.read_text().strip()
            except OSError as error:  # keep the last one: it may still be valid
                logger.warning("could not re-read %s: %s", self._token_file, error)
            else:
                self._headers["Authorization"] = f"Bearer {token}"
            self._token_read = now
        return self._headers

    def _observed(self, method: str, url: str, status: int, started: float) -> None:
        if self._observe is not None:
            self._observe(method, url, status, time.monotonic() - started)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        headers = self._auth_headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": content_type}
        async with self._gate.slot(priority.current()):
            started = time.monotonic()
            try:
                async with self._session.request(
                    method, self.server + url, params=params, data=data, headers=headers
                ) as response:
                    status, reason = response.status, response.reason
                    content = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                self._observed(method, url, 0, started)
                message = f"{method} {url}: {type(error).__name__} {error}".strip()
                raise UnavailableError(0, "Unavailable", message) from error
            self._observed(method, url, status, started)
        if 200 <= status < 300:
            found: Obj = json.loads(content) if content else {}
            return found
        try:
            answer: Obj = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = {"reason": reason or "", "message": content[:500].decode(errors="replace")}
        raise error_for(status, answer.get("reason", ""), answer.get("message", ""))

    async def get(self, url: str) -> Obj | None:
        """The object at url, or None if it does not exist."""
        try:
            return await self._request("GET", url)
        except NotFoundError:
            return None

    async def list(self, url: str, *, label_selector: str | None = None) -> list[Obj]:
        """The items of a collection."""
        params = {"labelSelector": label_selector} if label_selector else None
        items: list[Obj] = (await self._request("GET", url, params=params)).get("items", [])
        return items

    async def create(self, obj: Obj) -> Obj:
        """Create obj; ConflictError if an object of that name exists."""
        collection = path_of(obj).rsplit("/", 1)[0]
        return await self._request("POST", collection, body=obj)

    async def apply(self, obj: Obj) -> Obj:
        """Server-side apply obj as the operator's field manager, taking over conflicting fields."""
        return await self._request(
            "PATCH",
            path_of(obj),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def patch(self, url: str, patch: Obj) -> Obj:
        """A JSON merge patch."""
        return await self._request(
            "PATCH", url, body=patch, content_type="application/merge-patch+json"
        )

    async def event(self, about: Obj, *, type: str, reason: str, message: str) -> None:
        """Post a Kubernetes Event about an object; best effort, never raises."""
        meta = about["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": about["apiVersion"],
                "kind": about["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        url = path("v1", "events", meta["namespace"])
        try:
            await self._request("POST", url, body=event)
        except KubeError as error:
            logger.warning("could not post event %s about %s: %s", reason, meta["name"], error)

    async def delete(self, url: str, *, uid: str | None = None, grace: int | None = None) -> bool:
        """Delete the object at url (only if its uid matches, when given); False if already gone."""
        options: Obj = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        try:
            await self._request("DELETE", url, body=options)
        except NotFoundError:
            return False
        return True
