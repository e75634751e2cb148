"""schemathesis against the published OpenAPI schema: whatever it sends, never a 5xx."""

from __future__ import annotations

import uuid
import zlib
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from paddock_testing.apiserver import ApiServer

pytestmark = pytest.mark.apiserver


@pytest.fixture(scope="module")
def gateway_for_schema(
    apiserver: ApiServer, module_processes: Any, gateway_env: dict[str, str], agents_in: Any
) -> tuple[str, str]:
    """A gateway and a namespace with one Agent, "target", that is not Ready."""
    namespace = f"schema-{uuid.uuid4().hex[:8]}"
    apiserver.kubectl("create", "namespace", namespace)
    agents_in(namespace).create("target")
    url, _ = module_processes.gateway(gateway_env)
    return url, namespace


def test_no_input_makes_the_gateway_fail(
    gateway_for_schema: tuple[str, str], apiserver: ApiServer
) -> None:
    url, namespace = gateway_for_schema
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    # One session, closed here: a connection schemathesis left open (a response not read to
    # its end) would otherwise be closed by the garbage collector in some later test.
    session = requests.Session()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            # Half the cases reach a real Agent, so they get past the 404 of a made-up one.
            parameters = case.path_parameters or {}
            if "namespace" in parameters and zlib.crc32(str(parameters).encode()) % 2 == 0:
                parameters["namespace"] = namespace
                parameters["agent"] = "target"
            response = case.call(
                base_url=url, session=session, headers=apiserver.admin_headers, timeout=10
            )
            case.validate_response(response, checks=[not_a_server_error])

        check()
    session.close()
