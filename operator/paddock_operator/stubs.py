"""Credential stubs: the stand-in values the agent sees instead of real keys."""

from __future__ import annotations

import secrets

from paddock.api.agent import AgentSpec


def new_stub(name: str) -> str:
    """A fresh stub for a credential, stub_<name>_<random>, recognisable in logs and requests."""
    return f"stub_{name.lower()}_{secrets.token_hex(8)}"


def reconcile_stubs(spec: AgentSpec, existing: dict[str, str]) -> dict[str, str]:
    """One stub per credential: existing ones kept (stable across Pod restarts), new ones made."""
    return {c.name: existing.get(c.name) or new_stub(c.name) for c in spec.credentials}
