"""What can go wrong in the gateway; the HTTP edge (app.py) maps each to a status code.

GatewayError
├── UnauthenticatedError        401  no bearer token, or TokenReview says it is not valid
├── ForbiddenError              403  SubjectAccessReview says no to `connect` on the Agent
├── NotFoundError               404
│   ├── AgentNotFoundError           the Agent does not exist
│   └── SessionNotFoundError         the session does not exist (or belongs to another Agent)
├── BadRequestError             400  e.g. a cursor that is not a stream id
├── ConflictError               409  e.g. a message id reused with different content
└── UnavailableError            503  Redis or the Kubernetes API cannot be reached
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnauthenticatedError(GatewayError):
    status = 401


class ForbiddenError(GatewayError):
    status = 403


class NotFoundError(GatewayError):
    status = 404


class AgentNotFoundError(NotFoundError):
    pass


class SessionNotFoundError(NotFoundError):
    pass


class BadRequestError(GatewayError):
    status = 400


class ConflictError(GatewayError):
    status = 409


class UnavailableError(GatewayError):
    status = 503
