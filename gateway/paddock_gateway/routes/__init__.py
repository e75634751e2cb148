"""The HTTP API, one router per resource."""

from __future__ import annotations

from typing import Any

from paddock_gateway.models import Problem

PREFIX = "/v1/namespaces/{namespace}/agents/{agent}/sessions"

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No bearer token, or not a valid one"},
    403: {"model": Problem, "description": "The caller may not `connect` to this Agent"},
    404: {"model": Problem, "description": "No such Agent, or no such session on it"},
    503: {"model": Problem, "description": "Redis or the Kubernetes API is unreachable"},
}
