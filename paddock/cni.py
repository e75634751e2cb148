"""CNI mode: the egress redirect set up by a node plugin (cni/, paddock-egress) instead of a Pod.

What the operator, the node installer (`paddock cni-install`) and the plugin agree on lives here:
the annotation that marks a sandbox Pod, the plugin's entry in the node's conflist (the script of
paddock.egress and its digest), and how that entry is chained onto the node's own CNI config.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from paddock import egress

ANNOTATION: Final = "paddock.dev/egress"
"""On a sandbox Pod in CNI mode: `cni/<digest>`, the script it expects the node to apply."""
PLUGIN_TYPE: Final = "paddock-egress"
"""The plugin's binary name in the node's CNI bin directory, and its `type` in the conflist."""
CONFLIST_NAME: Final = "00-paddock-egress.conflist"
"""The chained copy of the node's CNI config, named to sort (and so be loaded) first."""

Conf = dict[str, Any]


def digest(script: str) -> str:
    """How a Pod names the script it expects: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(script.encode()).hexdigest()[:16]


def annotation_value() -> str:
    """The annotation's value on every sandbox Pod of this version of paddock."""
    return f"cni/{digest(egress.iptables_script())}"


def plugin_entry(*, iptables: str = "iptables", ip6tables: str = "ip6tables") -> Conf:
    """paddock-egress's entry in a conflist: the script, its digest, the capabilities it reads."""
    script = egress.iptables_script()
    return {
        "type": PLUGIN_TYPE,
        # containerd and CRI-O pass these only to plugins that declare them.
        "capabilities": {"io.kubernetes.cri.pod-annotations": True, "dns": True},
        "iptables": iptables,
        "ip6tables": ip6tables,
        "digest": digest(script),
        "script": script,
    }


def chained(primary: Conf, entry: Conf) -> Conf:
    """The node's conflist with paddock-egress last in its chain (replacing an older entry)."""
    plugins = [p for p in primary.get("plugins", []) if p.get("type") != PLUGIN_TYPE]
    if not plugins:
        raise ValueError(f"conflist {primary.get('name')!r} has no plugins to chain after")
    return {**primary, "plugins": [*plugins, entry]}


def is_config(name: str) -> bool:
    """Whether the runtime reads this file of the CNI config directory (as libcni does)."""
    return name.endswith((".conf", ".conflist", ".json")) and not name.startswith(".")


def primary_name(names: list[str]) -> str | None:
    """The node's own CNI config: the first the runtime would load, leaving ours aside."""
    own = sorted(n for n in names if is_config(n) and n != CONFLIST_NAME)
    return own[0] if own else None
