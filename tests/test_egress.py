"""The egress-init script, as text: what the operator puts in the init container."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from paddock.egress import iptables_script
from paddock.sandbox import VAULT_ADMIN_PORT, VAULT_TRANSPARENT_PORT, VAULT_UID

pytestmark = pytest.mark.unit


def test_script_is_valid_posix_shell() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n", "-c", iptables_script()], check=True)


def test_script_redirects_everyone_but_the_vault() -> None:
    script = iptables_script()
    assert f"-m owner --uid-owner {VAULT_UID} -j RETURN" in script
    assert f"REDIRECT --to-ports {VAULT_TRANSPARENT_PORT}" in script
    assert f"--dport {VAULT_ADMIN_PORT} -m owner ! --uid-owner {VAULT_UID}" in script
    # IPv6 is redirected too, or rejected, or the script fails: it never leaves IPv6 open.
    assert 'redirect "$IP6TABLES"' in script
    assert 'reject_all "$IP6TABLES"' in script
    assert "exit 1" in script


def test_script_follows_its_parameters() -> None:
    script = iptables_script(vault_uid=4242, redirect_port=16006, admin_port=16090)
    assert "--uid-owner 4242" in script
    assert "--to-ports 16006" in script
    assert "--dport 16090" in script
    assert "1337" not in script
