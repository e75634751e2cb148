"""The API server's refusals, one class per HTTP status the operator acts on.

KubeError            any refusal; .status, .reason, .message
├── NotFoundError    404
├── ConflictError    409
├── InvalidError     422
└── UnavailableError no answer (status 0)
"""

from __future__ import annotations


class KubeError(Exception):
    """The API server refused a request; .status is the HTTP status, .reason Kubernetes' reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(KubeError):
    """404: the object (or its namespace) does not exist."""


class ConflictError(KubeError):
    """409: it exists already, or a resourceVersion/uid precondition failed."""


class InvalidError(KubeError):
    """422, or 403 from an admission plugin: the object was rejected."""


class UnavailableError(KubeError):
    """No answer: the connection failed or the request timed out (status 0)."""


_BY_STATUS: dict[int, type[KubeError]] = {404: NotFoundError, 409: ConflictError, 422: InvalidError}


def error_for(status: int, reason: str, message: str) -> KubeError:
    """The error for an HTTP status the API server answered with."""
    return _BY_STATUS.get(status, KubeError)(status, reason, message)
