"""A Kubernetes object as the API server reads and writes it: one JSON object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object (or part of one) in its JSON form: apiVersion, kind, metadata, spec, ..."""


def timestamp(text: str) -> datetime:
    """A Kubernetes timestamp (creationTimestamp, lastTransitionTime: RFC 3339 in UTC, `Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(when: datetime) -> str:
    """A time as paddock writes it into a status where another writer's is compared with it
    (lastActivityTime, idleSuspendTime, wakeTime): UTC, `Z`, microseconds."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
