"""An ASGI app served by a real uvicorn server on loopback, in the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from plexica.kit.ports import free_port


@asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[int]:
    """The port ``app`` answers on until the block ends; ``config``: more of uvicorn's."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, **config)
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not server.started:
                assert not task.done(), "the server did not start"
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task
