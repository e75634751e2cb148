"""A pass-through proxy in front of a real model server that keeps the chat requests it forwards.

Tests put it between the runner and llama-server to see what the model was really sent (the
model still answers: nothing is faked).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from paddock_testing.proc import free_port


class ModelTap:
    """Serves on a free loopback port; `async with` runs it in the current event loop."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.chat_requests: list[dict[str, Any]] = []
        """Bodies of the POST .../chat/completions requests, in order."""
        self.port = free_port()
        self.model_url = f"http://127.0.0.1:{self.port}/v1"
        # One connection per request, like the runner's own client (see paddock_runner.main).
        self._client = httpx.AsyncClient(
            base_url=upstream, timeout=120, limits=httpx.Limits(max_keepalive_connections=0)
        )
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._task: asyncio.Task[None] | None = None

    async def _forward(self, request: Request) -> StreamingResponse:
        body = await request.body()
        if request.url.path.endswith("/chat/completions"):
            self.chat_requests.append(json.loads(body))
        upstream = self._client.build_request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=body,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        response = await self._client.send(upstream, stream=True)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
            background=BackgroundTask(response.aclose),
        )

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        await self._client.aclose()
