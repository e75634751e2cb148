"""The leaf the vault presents: for the host asked, serverAuth only, SKI/AKI, short-lived."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from paddock_testing.vault import RunningVault, Upstream, tunnel

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_leaf_presented_for_a_credential_host(
    vault: RunningVault, upstream: Upstream
) -> None:
    _reader, writer = await tunnel(
        vault.proxy_port, f"api.github.test:{upstream.port}", context=vault.certs.agent_context()
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    leaf = x509.load_der_x509_certificate(der)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.github.test"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = vault.certs.agent_ca.cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    assert aki.key_identifier == ca_ski.digest
    assert ski.digest != ca_ski.digest
    assert leaf.issuer == vault.certs.agent_ca.cert.subject
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(hours=4, minutes=5)
