"""The audit trail: one JSON line per decision, holding names and places, never a value.

Only the fields below are written. Paths lose their query string (it may hold a stub or, after a
swap, a value); credentials appear by name.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("paddock_vault.audit")


def _path(target: bytes | None) -> str | None:
    if target is None:
        return None
    return target.split(b"?", 1)[0][:256].decode("latin-1")


def record(
    event: str,
    *,
    mode: str,
    host: str | None = None,
    port: int | None = None,
    method: bytes | None = None,
    target: bytes | None = None,
    reason: str | None = None,
    message: str | None = None,
    credentials: tuple[str, ...] = (),
    status: int | None = None,
) -> None:
    """Log one decision: `blocked` at WARNING, everything else at INFO."""
    level = logging.WARNING if event == "blocked" else logging.INFO
    if not log.isEnabledFor(level):
        return
    entry = {
        "event": event,
        "mode": mode,
        "host": host,
        "port": port,
        "method": method.decode("latin-1") if method else None,
        "path": _path(target),
        "status": status,
        "reason": reason,
        "credentials": list(credentials) or None,
        "message": message,
    }
    line = json.dumps({k: v for k, v in entry.items() if v is not None})
    log.log(level, line)
