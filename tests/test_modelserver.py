"""Model control over llama-server's router API, against the real server."""

from __future__ import annotations

import httpx
import pytest

from paddock.modelserver import LOADED, UNLOADED, ModelServer, ModelServerError
from paddock_testing.llamaserver import LlamaServer

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_the_loaded_model_is_the_current_one_and_unknown_models_are_refused(
    llama_server: LlamaServer,
) -> None:
    async with httpx.AsyncClient(base_url=llama_server.url, timeout=120) as http:
        server = ModelServer(http)
        assert await server.healthy()

        await server.swap("tiny-b")
        assert await server.current() == "tiny-b"

        await server.unload("tiny-b")
        await server.wait("tiny-b", UNLOADED)
        assert await server.current() is None, "two models offered, none loaded: no answer"

        with pytest.raises(ModelServerError, match="does not offer 'nope'"):
            await server.swap("nope")
        await server.load("tiny-a")
        await server.wait("tiny-a", LOADED)
        assert {m.id: m.status for m in await server.models()} == {
            "tiny-a": LOADED,
            "tiny-b": UNLOADED,
        }
