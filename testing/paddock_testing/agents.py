"""Agent bodies for tests and benchmarks."""

from __future__ import annotations

from typing import Any


def minimal_agent(name: str) -> dict[str, Any]:
    """A small valid llamacpp Agent with one credential, TOKEN, from key v of Secret token."""
    return {
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "harness": {"image": "paddock/harness:0.1.0"},
            "model": {
                "models": [{"name": "m", "source": {"pvc": {"claimName": "models", "path": "m"}}}],
                "default": "m",
            },
            "credentials": [
                {"name": "TOKEN", "secretRef": {"name": "token", "key": "v"}, "hosts": ["a.io"]}
            ],
        },
    }
