"""A Kubernetes object as the API server reads and writes it: one JSON object."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object (or part of one) in its JSON form: apiVersion, kind, metadata, spec, ..."""
