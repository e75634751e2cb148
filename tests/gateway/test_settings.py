"""The gateway's settings refuse what would be unsafe, and say why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from paddock_gateway.errors import BadRequestError
from paddock_gateway.events import parse_cursor
from paddock_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PADDOCK_GATEWAY_KUBE_URL": "http://10.0.0.1"}, "kube_url must be https"),
        ({"PADDOCK_GATEWAY_REDIS_URL": "memcached://x"}, "redis_url must start with"),
        ({"PADDOCK_GATEWAY_SWEEP_SECONDS": "9", "PADDOCK_GATEWAY_LEASE_SECONDS": "2"}, "sweep"),
        ({"PADDOCK_GATEWAY_LEASE_SECONDS": "0.1"}, "greater than or equal to 0.5"),
    ],
)
def test_unsafe_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        GatewaySettings()


def test_defaults_suit_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    settings = GatewaySettings()
    assert settings.kube_url == "https://10.96.0.1:443"
    assert str(settings.kube_token_file).endswith("serviceaccount/token")


@pytest.mark.parametrize("cursor", ["", "abc", "1-2-3", "-1", "1-", "1" * 21])
def test_cursors_that_are_not_event_ids_are_refused(cursor: str) -> None:
    with pytest.raises(BadRequestError, match="not an event id"):
        parse_cursor(cursor)


def test_cursors_compare_as_stream_ids() -> None:
    assert parse_cursor("10-0") > parse_cursor("9-99") > parse_cursor("9")
