"""REST paths of Kubernetes collections and objects."""

from __future__ import annotations

from paddock.kubeobj import Obj


def path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or an object."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


PLURALS = {
    "Pod": "pods",
    "Service": "services",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "NetworkPolicy": "networkpolicies",
    "Event": "events",
}


def path_of(obj: Obj) -> str:
    """The REST path of an object from its apiVersion, kind, namespace and name."""
    meta = obj["metadata"]
    return path(obj["apiVersion"], PLURALS[obj["kind"]], meta.get("namespace"), meta["name"])
