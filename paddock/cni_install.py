"""`paddock cni-install`: puts paddock-egress into a node's CNI chain and keeps it there.

Run by the chart's DaemonSet on every node (root, the host's /opt/cni/bin and /etc/cni/net.d
mounted). It copies the plugin binary, then writes CONFLIST_NAME: the node's own conflist with
paddock-egress chained last, named to sort first, so the runtime loads it instead. The node's
config is never edited in place: a CNI that rewrites its file (kind's paddock-netpol does, every
second) does not fight the installer, which re-derives the copy whenever the original changes.
On SIGTERM (helm uninstall, a rollout) it removes the copy, then the binary: the runtime goes back
to the node's own config, and no Pod is left without networking.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paddock import cni

log = logging.getLogger("paddock.cni-install")


class InstallError(Exception):
    """The node's CNI config cannot be chained (none, unreadable, or it sorts before ours)."""


@dataclass(frozen=True)
class Node:
    """Where the node's CNI lives, as mounted into the installer."""

    bin_dir: Path
    conf_dir: Path
    plugin: Path
    """The plugin binary shipped in the installer's image."""
    iptables: str = "iptables"
    ip6tables: str = "ip6tables"

    @property
    def conflist(self) -> Path:
        return self.conf_dir / cni.CONFLIST_NAME

    @property
    def binary(self) -> Path:
        return self.bin_dir / cni.PLUGIN_TYPE


def _write(path: Path, data: bytes, mode: int) -> bool:
    """Writes path atomically (temp then rename) unless it already holds data."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def _load(path: Path) -> dict[str, Any]:
    conf: dict[str, Any] = json.loads(path.read_text())
    if "plugins" not in conf:  # a single-plugin .conf
        conf = {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"), "plugins": [conf]}
    return conf


def sync(node: Node) -> None:
    """One pass: the binary and the chained conflist up to date with the node's own config."""
    if _write(node.binary, node.plugin.read_bytes(), 0o755):
        log.info("installed %s", node.binary)
    primary = cni.primary_name(os.listdir(node.conf_dir))
    if primary is None:
        node.conflist.unlink(missing_ok=True)
        raise InstallError(f"no CNI config in {node.conf_dir} to chain paddock-egress onto yet")
    if primary < cni.CONFLIST_NAME:
        raise InstallError(f"{primary} sorts before {cni.CONFLIST_NAME}: the runtime would load it")
    try:
        conf = _load(node.conf_dir / primary)
        entry = cni.plugin_entry(iptables=node.iptables, ip6tables=node.ip6tables)
        text = json.dumps(cni.chained(conf, entry), indent=2) + "\n"
    except (OSError, ValueError) as error:
        raise InstallError(f"{primary}: {error}") from None
    if _write(node.conflist, text.encode(), 0o644):
        log.info("wrote %s: %s with paddock-egress chained", node.conflist, primary)


def uninstall(node: Node) -> None:
    """Takes paddock-egress out of the chain, then off the node."""
    node.conflist.unlink(missing_ok=True)
    node.binary.unlink(missing_ok=True)
    log.info("removed %s and %s", node.conflist, node.binary)


def run(node: Node, *, ready_file: Path, interval: float = 1.0) -> int:
    """Syncs every `interval` seconds until SIGTERM/SIGINT, then uninstalls."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    problem = ""
    while not stop.is_set():
        try:
            sync(node)
            ready_file.touch()
            problem = ""
        except (InstallError, OSError) as error:
            ready_file.unlink(missing_ok=True)
            if str(error) != problem:
                problem = str(error)
                log.warning("not ready: %s", problem)
        stop.wait(interval)
    ready_file.unlink(missing_ok=True)
    uninstall(node)
    return 0


def default_plugin() -> Path:
    """The binary in the installer's image (images/paddock.Dockerfile, stage cni)."""
    found = shutil.which(cni.PLUGIN_TYPE, path="/opt/paddock-cni")
    return Path(found or f"/opt/paddock-cni/{cni.PLUGIN_TYPE}")
