"""Fixtures for the vault's tests: CAs, a real upstream TLS server, running vaults, log checks."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from paddock_testing.vault import (
    REAL_VALUES,
    UPSTREAM_NAMES,
    Dials,
    Pki,
    Resolver,
    RunningVault,
    StartVault,
    Upstream,
    serve,
    vault_for_tests,
)
from paddock_vault.app import Vault


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CAs shared by the whole session (minting is the slow part)."""
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture
async def upstream(certs: Pki) -> AsyncIterator[Upstream]:
    """A real TLS server on 127.0.0.1 answering for every test name, with a public-CA cert."""
    cert, key = certs.server_files(UPSTREAM_NAMES)
    async with serve(Upstream(), cert, key) as server:
        yield server


@pytest_asyncio.fixture
async def start_vault(certs: Pki, tmp_path: Path) -> AsyncIterator[StartVault]:
    """Start vaults with test settings (ports: the destination ports allowed); stopped after."""
    running: list[Vault] = []

    async def start(
        *, ports: list[int], resolver: Resolver | None = None, **settings: Any
    ) -> RunningVault:
        config_file = settings.pop("config_file", None) or certs.write_config(tmp_path / "vault")
        resolver = resolver or Resolver()
        dials = Dials()
        settings = {"reload_interval": 0.05} | settings
        vault = vault_for_tests(
            certs, config_file, ports=ports, resolver=resolver, dialer=dials, **settings
        )
        await vault.start()
        running.append(vault)
        return RunningVault(vault, resolver, dials, config_file, certs)

    yield start
    for vault in running:
        await vault.stop(grace=0.5)


@pytest_asyncio.fixture
async def vault(start_vault: StartVault, upstream: Upstream) -> RunningVault:
    """A vault in front of the upstream server."""
    return await start_vault(ports=[upstream.port])


@pytest.fixture(scope="session")
def own() -> ipaddress.IPv4Address:
    """This machine's own address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = ipaddress.IPv4Address(probe.getsockname()[0])
    assert not address.is_loopback, "the test needs an address other than loopback"
    return address


@pytest.fixture(autouse=True)
def no_real_values_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every vault test also checks that no log line holds a real value."""
    caplog.set_level("DEBUG")
    yield
    for record in caplog.records:
        text = record.getMessage()
        for real in REAL_VALUES:
            assert real not in text, f"a real value was logged: {text}"
