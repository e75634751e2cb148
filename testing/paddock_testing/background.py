"""An async context run on an event loop in another thread, for blocking tests (hypothesis)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Background(Generic[T]):
    """What the context gave (`value`), and a way to run coroutines on its loop."""

    loop: asyncio.AbstractEventLoop
    value: T

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run coro on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def background(serve: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[Background[T]]:
    """Enter serve() on a new event loop in a daemon thread until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stop = asyncio.Event()
    ready: asyncio.Future[T] = loop.create_future()

    async def main() -> None:
        async with serve() as value:
            ready.set_result(value)
            await stop.wait()

    task = asyncio.run_coroutine_threadsafe(main(), loop)
    try:
        waited = asyncio.wait_for(asyncio.shield(ready), 20)
        yield Background(loop, asyncio.run_coroutine_threadsafe(waited, loop).result(30))
    finally:
        loop.call_soon_threadsafe(stop.set)
        task.result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
