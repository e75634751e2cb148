"""kopf's per-object bookkeeping, switched off: paddock registers no change-detecting handlers.

kopf's on.create/on.update handlers compare each object with an "essence" it stores on the object
(and handlers' progress with it). paddock's handlers are on.event and index handlers only, so
nothing reads those; yet kopf still deep-copies every Agent and Pod on every event to build the
essence (9% of the operator's CPU under load). These storages build, keep and read nothing.
A change-detecting handler added later would never fire: it would need kopf's own storages back.
"""

from __future__ import annotations

from typing import Any

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """No essence: every object looks unchanged to kopf, which no handler here asks about."""

    def build(self, *, body: Any, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: Any) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class NoProgress(kopf.ProgressStorage):
    """No handler progress: on.event handlers are not retried by kopf (the reconciler retries)."""

    def fetch(self, *, key: Any, body: Any) -> None:
        return None

    def store(self, *, key: Any, record: Any, body: Any, patch: Any) -> None:
        return None

    def purge(self, *, key: Any, body: Any, patch: Any) -> None:
        return None

    def touch(self, *, body: Any, patch: Any, value: Any) -> None:
        return None

    def clear(self, *, essence: Any) -> Any:
        return essence
