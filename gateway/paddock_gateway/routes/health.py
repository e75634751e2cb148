"""Liveness and readiness of the gateway process."""

from __future__ import annotations

from fastapi import APIRouter

from paddock_gateway.deps import SessionStore
from paddock_gateway.errors import UnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(store: SessionStore) -> dict[str, str]:
    """Redis answers too."""
    try:
        await store.redis.ping()
    except Exception as error:
        raise UnavailableError(f"Redis unreachable: {error}") from error
    return {"status": "ok"}
