"""What the operator remembers of each Agent between events; forgotten when the Agent goes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from paddock.kubeobj import Obj
from paddock_operator.names import AgentRef

AgentKey = tuple[str, str, str]

STALE_VERSIONS = 8


@dataclass
class WrittenStatus:
    """The last status this operator wrote for an Agent, and the versions it made stale."""

    status: Obj
    """The whole status after the write."""
    version: str
    """The Agent's resourceVersion after the write."""
    stale: list[str]
    """resourceVersions of the Agent that predate the write (the newest few)."""


@dataclass
class AgentMemory:
    """What this operator remembers of one Agent."""

    generation: int | None = None
    """The generation taken on (reconciled, or being retried)."""
    written: WrittenStatus | None = None
    """Pod events read the Agent from kopf's index, which can still hold the version before the
    last status write: without this, each such event would write the same status again."""
    workspace_warning: tuple[int, str] | None = None
    """(generation, message) of the last WorkspaceNotUpdated Warning, so a resync repeats none."""
    phase: str | None = None
    """The phase of the last status computed for the Agent (written or already there)."""
    ready_pod: str | None = None
    """UID of the last Pod seen Ready: its start is measured once."""
    idle_check: float | None = None
    """Seconds (as of the last status computed) until the idle policy wants a reconcile."""
    egress_replaced: int = 0
    """Pods replaced in a row because the node's CNI plugin did not set up their network: each
    next replacement waits longer (a node without the plugin is not hammered with Pods)."""

    def wrote_status(self, body: Obj, patched: Obj, status: Obj) -> None:
        """Remember a status write: `patched` is the API server's answer to it, made from body."""
        known = self.written
        stale = [*known.stale, known.version] if known else []
        if base := body["metadata"].get("resourceVersion"):
            stale.append(base)
        version = str(patched.get("metadata", {}).get("resourceVersion", ""))
        self.written = WrittenStatus(
            status=status,
            version=version,
            stale=[v for v in stale if v != version][-STALE_VERSIONS:],
        )


class Memory:
    """Every Agent's AgentMemory, by AgentRef.key."""

    def __init__(self) -> None:
        self._agents: dict[AgentKey, AgentMemory] = {}

    def of(self, ref: AgentRef) -> AgentMemory:
        """This Agent's memory, empty the first time."""
        return self._agents.setdefault(ref.key, AgentMemory())

    def status_of(self, ref: AgentRef, body: Obj) -> Obj:
        """The Agent's status: body's, unless body predates this operator's last status write."""
        memory = self._agents.get(ref.key)
        known = memory.written if memory else None
        version = body["metadata"].get("resourceVersion")
        if known is not None and version in known.stale:
            return known.status
        status: Obj = body.get("status") or {}
        return status

    def phases(self) -> list[tuple[str, str, str]]:
        """(namespace, name, phase) of every Agent with a status computed."""
        return [(k[0], k[1], m.phase) for k, m in self._agents.items() if m.phase is not None]

    def forget(self, key: AgentKey) -> None:
        """Drop what is remembered of one Agent."""
        self._agents.pop(key, None)

    def forget_all_but(self, keep: Iterable[AgentKey]) -> None:
        """Drop what is remembered of every Agent not in keep."""
        kept = set(keep)
        for key in [k for k in self._agents if k not in kept]:
            del self._agents[key]
