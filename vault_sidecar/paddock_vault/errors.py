"""Why the vault refuses: one exception family, turned into an HTTP answer only at the edge.

VaultError
├── PolicyError       the request breaks policy (403, 421, 400...): audited as a block
├── RequestError    the bytes are not HTTP/1.1 the vault accepts (400, 413, 431, 501)
└── UpstreamError the destination could not be reached safely (502, 504)
"""

from __future__ import annotations


class VaultError(Exception):
    """A request the vault will not forward; status is the HTTP code the agent gets."""

    status = 500
    reason = "error"

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason


class PolicyError(VaultError):
    """Policy says no: a destination, a credential or a mismatch."""

    status = 403
    reason = "refused"


class RequestError(VaultError):
    """Malformed or ambiguous HTTP (request smuggling, limits)."""

    status = 400
    reason = "bad_request"


class UpstreamError(VaultError):
    """The destination failed: connection, TLS verification or timeout."""

    status = 502
    reason = "upstream"
