"""Agent bodies for tests and benchmarks."""

from __future__ import annotations

import uuid
from typing import Any


def _agent(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"harness": {"image": "paddock/harness:0.1.0"}, **spec},
    }


def minimal_agent(name: str) -> dict[str, Any]:
    """A small valid llamacpp Agent with one credential, TOKEN, from key v of Secret token."""
    return _agent(
        name,
        model={
            "models": [{"name": "m", "source": {"pvc": {"claimName": "models", "path": "m"}}}],
            "default": "m",
        },
        credentials=[
            {"name": "TOKEN", "secretRef": {"name": "token", "key": "v"}, "hosts": ["a.io"]}
        ],
    )


def idle_agent(name: str, idle_after: str, **spec: Any) -> dict[str, Any]:
    """minimal_agent with spec.lifecycle.idleAfter (and whatever else spec says)."""
    agent = minimal_agent(name)
    agent["spec"] |= {"lifecycle": {"idleAfter": idle_after}, **spec}
    return agent


def external_agent(name: str) -> list[dict[str, Any]]:
    """A small Agent with an external model (no model server: it fits on a kind node beside the
    example Agent), and the Secret of its one credential, KEY, for inference.example.com."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-key"},
        "stringData": {"key": f"sk_real_{uuid.uuid4().hex}"},
    }
    agent = _agent(
        name,
        model={
            "engine": "external",
            "models": [{"name": "m"}],
            "default": "m",
            "external": {"baseURL": "https://inference.example.com/v1", "credential": "KEY"},
        },
        credentials=[
            {
                "name": "KEY",
                "secretRef": {"name": f"{name}-key", "key": "key"},
                "hosts": ["inference.example.com"],
            }
        ],
        workspace={"size": "50Mi"},
    )
    return [secret, agent]
