"""Security contexts: non-root, no capabilities, no privilege escalation, read-only roots."""

from __future__ import annotations

from paddock.kubeobj import Obj


def restricted(uid: int) -> Obj:
    """A container security context that meets the Pod Security 'restricted' profile, with a
    read-only root filesystem (every container writes only to its volumes)."""
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def network_admin() -> Obj:
    """The egress-init container's: root with NET_ADMIN and NET_RAW only, to write iptables."""
    return {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
