"""The operator's API client against the real API server: credentials and failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from paddock_operator.kube.client import KubeClient
from paddock_operator.kube.errors import KubeError, UnavailableError
from paddock_testing.apiserver import ApiServer
from paddock_testing.proc import free_port

pytestmark = [pytest.mark.apiserver, pytest.mark.asyncio]


async def test_a_rotated_service_account_token_is_picked_up(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-token-the-api-server-knows\n")
    kube = KubeClient(apiserver.url, ssl_context=apiserver.ssl_context(), headers={},
                      token_file=token, token_max_age=0)  # fmt: skip
    try:
        with pytest.raises(KubeError) as refused:
            await kube.list("/api/v1/namespaces")
        assert refused.value.status == 401
        token.write_text(apiserver.token + "\n")  # what the kubelet does when it rotates it
        names = {n["metadata"]["name"] for n in await kube.list("/api/v1/namespaces")}
        assert "default" in names
    finally:
        await kube.aclose()


async def test_no_answer_is_an_unavailable_error_not_a_crash(apiserver: ApiServer) -> None:
    gone = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    kube = KubeClient(gone, ssl_context=apiserver.ssl_context(), headers=apiserver.admin_headers)
    try:
        with pytest.raises(UnavailableError) as failed:
            await kube.get("/api/v1/namespaces/default")
        assert failed.value.status == 0
        assert "GET /api/v1/namespaces/default" in failed.value.message
    finally:
        await kube.aclose()
