"""A Kubernetes object as the API server reads and writes it: one JSON object."""

from __future__ import annotations

from datetime import datetime
from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object (or part of one) in its JSON form: apiVersion, kind, metadata, spec, ..."""


def timestamp(text: str) -> datetime:
    """A Kubernetes timestamp (creationTimestamp, lastTransitionTime: RFC 3339 in UTC, `Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
