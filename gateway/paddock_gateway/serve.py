"""`paddock gateway`: serve the API with uvicorn (the gateway image's entrypoint)."""

from __future__ import annotations

import logging

import uvicorn

from paddock_gateway.app import create_app
from paddock_gateway.settings import GatewaySettings


def serve(settings: GatewaySettings) -> None:
    """Run the gateway until it is stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per runner request is noise
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
