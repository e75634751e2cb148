"""`paddock cni-install` on a node's CNI directories (temporary ones): chain, follow, remove."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from paddock import cni, cni_install
from paddock_testing.wait import wait_for

pytestmark = pytest.mark.unit

PRIMARY = {
    "cniVersion": "0.4.0",
    "name": "paddock",
    "plugins": [{"type": "ptp", "ipam": {"type": "host-local"}}, {"type": "portmap"}],
}


@pytest.fixture
def node(tmp_path: Path) -> cni_install.Node:
    (tmp_path / "bin").mkdir()
    (tmp_path / "net.d").mkdir()
    plugin = tmp_path / "image-plugin"
    plugin.write_bytes(b"\x7fELF plugin")
    (tmp_path / "net.d" / "10-paddock.conflist").write_text(json.dumps(PRIMARY))
    return cni_install.Node(bin_dir=tmp_path / "bin", conf_dir=tmp_path / "net.d", plugin=plugin)


def _types(path: Path) -> list[str]:
    return [p["type"] for p in json.loads(path.read_text())["plugins"]]


def test_the_chained_copy_is_loaded_first_and_ends_with_the_plugin(node: cni_install.Node) -> None:
    cni_install.sync(node)
    assert node.binary.read_bytes() == b"\x7fELF plugin"
    assert node.binary.stat().st_mode & 0o777 == 0o755
    assert _types(node.conflist) == ["ptp", "portmap", cni.PLUGIN_TYPE]
    assert (
        cni.primary_name(sorted(p.name for p in node.conf_dir.iterdir())) == "10-paddock.conflist"
    )
    assert sorted(p.name for p in node.conf_dir.iterdir())[0] == cni.CONFLIST_NAME
    # The node's own file is never touched.
    assert json.loads((node.conf_dir / "10-paddock.conflist").read_text()) == PRIMARY


def test_a_rewritten_node_config_is_followed(node: cni_install.Node) -> None:
    cni_install.sync(node)
    changed = PRIMARY | {"plugins": [{"type": "bridge"}]}
    (node.conf_dir / "10-paddock.conflist").write_text(json.dumps(changed))
    cni_install.sync(node)
    assert _types(node.conflist) == ["bridge", cni.PLUGIN_TYPE]


def test_a_single_plugin_conf_is_chained_too(node: cni_install.Node) -> None:
    (node.conf_dir / "10-paddock.conflist").unlink()
    (node.conf_dir / "20-bridge.conf").write_text(
        '{"cniVersion": "0.4.0", "name": "b", "type": "bridge"}'
    )
    cni_install.sync(node)
    assert _types(node.conflist) == ["bridge", cni.PLUGIN_TYPE]


def test_no_node_config_is_not_ready_and_leaves_no_stale_copy(node: cni_install.Node) -> None:
    cni_install.sync(node)
    (node.conf_dir / "10-paddock.conflist").unlink()
    with pytest.raises(cni_install.InstallError, match="no CNI config"):
        cni_install.sync(node)
    assert not node.conflist.exists()


def test_a_config_that_sorts_first_is_refused(node: cni_install.Node) -> None:
    (node.conf_dir / "00-multus.conf").write_text('{"name": "m", "type": "multus"}')
    with pytest.raises(cni_install.InstallError, match="sorts before"):
        cni_install.sync(node)


def test_sigterm_takes_the_plugin_out_of_the_chain(node: cni_install.Node, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "paddock.cli", "cni-install", "--cni-bin-dir", str(node.bin_dir),
         "--cni-conf-dir", str(node.conf_dir), "--plugin", str(node.plugin),
         "--ready-file", str(ready), "--interval", "0.1"],
    )  # fmt: skip
    try:
        wait_for(ready.exists, "the installer to be ready", 20, every=0.05)
        assert node.conflist.exists()
        assert node.binary.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert not node.conflist.exists()
    assert not node.binary.exists()
    assert not ready.exists()
    assert (node.conf_dir / "10-paddock.conflist").exists()


def test_annotation_names_the_script_the_plugin_entry_carries() -> None:
    entry = cni.plugin_entry()
    assert cni.annotation_value() == f"cni/{entry['digest']}"
    assert entry["digest"] == cni.digest(entry["script"])
    assert entry["capabilities"] == {"io.kubernetes.cri.pod-annotations": True, "dns": True}
