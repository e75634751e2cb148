"""Names, labels and owner references of everything the operator creates for an Agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from paddock.api import agent as api

AGENT_LABEL: Final = "paddock.dev/agent"
SPEC_HASH: Final = "paddock.dev/spec-hash"
MANAGED_BY: Final = "paddock-operator"


@dataclass(frozen=True)
class AgentRef:
    """Which Agent an object belongs to."""

    name: str
    namespace: str
    uid: str
    generation: int = 1

    @property
    def key(self) -> tuple[str, str, str]:
        """This Agent, not a later one of the same name: what the operator remembers it by."""
        return (self.namespace, self.name, self.uid)

    @property
    def pod(self) -> str:
        """The sandbox Pod (one per Agent, so a fixed name rules out duplicates)."""
        return f"{self.name}-sandbox"

    @property
    def service(self) -> str:
        return self.name

    @property
    def workspace(self) -> str:
        return f"{self.name}-workspace"

    @property
    def ca_secret(self) -> str:
        """The Agent's CA (certificate and key) and its stable credential stubs."""
        return f"{self.name}-ca"

    @property
    def vault_config(self) -> str:
        """The vault's configuration file and the CA's certificate (no key)."""
        return f"{self.name}-vault"

    @property
    def network_policy(self) -> str:
        return f"{self.name}-sandbox"

    def labels(self, component: str) -> dict[str, str]:
        """Labels on every object of this Agent."""
        return {
            "app.kubernetes.io/name": "paddock-agent",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            AGENT_LABEL: self.name,
        }

    def owner(self) -> dict[str, Any]:
        """An owner reference that makes the garbage collector delete the object with the Agent."""
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, component: str, *, owned: bool = True) -> dict[str, Any]:
        """Metadata for an object called name, labelled and (when owned) owned by the Agent."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
        }
        if owned:
            meta["ownerReferences"] = [self.owner()]
        return meta
