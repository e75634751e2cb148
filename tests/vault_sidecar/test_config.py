"""Loading the operator's files, and the settings that refuse unsafe values."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from paddock_testing.vault import Pki
from paddock_vault.app import Vault
from paddock_vault.certs import LeafCache
from paddock_vault.config import ConfigError, Route, load
from paddock_vault.errors import PolicyError
from paddock_vault.settings import VaultSettings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


def test_routes(certs: Pki, tmp_path: Path) -> None:
    policy = load(certs.write_config(tmp_path))
    assert policy.route("api.github.test") is Route.DECRYPT
    assert policy.route("raw.githubusercontent.test") is Route.DECRYPT
    assert policy.route("allowed.test") is Route.TUNNEL
    assert policy.route("evil.test") is Route.REFUSE
    assert policy.route("127.0.0.1") is Route.REFUSE


def test_short_or_reused_values_refused(certs: Pki, tmp_path: Path) -> None:
    config = certs.write_config(tmp_path)
    (tmp_path / "values" / "GITHUB_TOKEN").write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 8"):
        load(config)
    data = json.loads(config.read_text())
    data["credentials"][1]["stub"] = data["credentials"][0]["stub"]
    config.write_text(json.dumps(data))
    with pytest.raises(ConfigError):
        load(config)


def test_injection_that_could_split_headers_refused(certs: Pki, tmp_path: Path) -> None:
    config = certs.write_config(tmp_path)
    data = json.loads(config.read_text())
    data["credentials"][1]["injection"] = {"header": "X-Api-Key", "format": "k={value}\r\nX: y"}
    config.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="injection"):
        load(config)


def test_missing_files_refused(certs: Pki, tmp_path: Path) -> None:
    config = certs.write_config(tmp_path)
    (tmp_path / "values" / "OTHER_KEY").unlink()
    with pytest.raises(ConfigError):
        load(config)


def test_leaf_cache_reuses_contexts(certs: Pki) -> None:
    cache = LeafCache(certs.agent_ca)
    first = cache.context_for("api.github.test")
    assert cache.context_for("api.github.test") is first
    cache.context_for("api.other.test")
    assert cache.minted == 2


@pytest.mark.parametrize(
    "cidrs", [["0.0.0.0/0"], ["10.0.0.0/8"], ["169.254.169.0/24"], ["::/0"], ["fd00:ec2::/64"]]
)
def test_unsafe_allow_list_refuses_wide_or_metadata_networks(cidrs: list[str]) -> None:
    with pytest.raises(ValidationError):
        VaultSettings(unsafe_allow_cidrs=cidrs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/0"],
        ["127.0.0.0/8"],
        ["169.254.0.0/16"],
        ["100.100.100.0/24"],  # Alibaba's metadata address
        ["224.0.0.0/8"],
        ["::/0"],
        ["::ffff:10.0.0.0/104"],
        ["fd00:ec2::/64"],
        ["fe80::/64"],
    ],
)
def test_internal_networks_never_open_loopback_link_local_or_metadata(cidrs: list[str]) -> None:
    with pytest.raises(ValidationError, match="internal_networks"):
        VaultSettings(internal_networks=cidrs)  # type: ignore[arg-type]


def test_internal_networks_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PADDOCK_VAULT_INTERNAL_NETWORKS", '["10.0.0.0/8", "fd12:3456::/32"]')
    assert [str(n) for n in VaultSettings().internal_networks] == ["10.0.0.0/8", "fd12:3456::/32"]


def test_internal_networks_open_exactly_themselves_to_the_vault(certs: Pki, tmp_path: Path) -> None:
    settings = VaultSettings(
        config_file=certs.write_config(tmp_path),
        internal_networks=["10.96.0.200/29"],  # type: ignore[list-item]
    )
    guard = Vault(settings).ctx.guard
    guard.check(ipaddress.ip_address("10.96.0.201"), 443)
    for outside in ("10.96.0.208", "10.244.0.5", "169.254.169.254"):
        with pytest.raises(PolicyError, match="refused"):
            guard.check(ipaddress.ip_address(outside), 443)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PADDOCK_VAULT_ALLOWED_PORTS", "[443]")
    monkeypatch.setenv("PADDOCK_VAULT_PROXY_PORT", "16001")
    settings = VaultSettings()
    assert settings.allowed_ports == [443]
    assert settings.proxy_port == 16001
    assert str(settings.config_file) == "/etc/paddock/vault/config.json"
