"""Background work restarted after a failure, with a doubling wait between the tries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def restart_on_failure(
    run: Callable[[], Awaitable[None]],
    *,
    failed: Callable[[float], None],
    wait: Callable[[float], Awaitable[object]] = asyncio.sleep,
    stopping: asyncio.Event | None = None,
    first_wait: float = 1.0,
    longest_wait: float = 30.0,
) -> None:
    """Await ``run`` until it returns. After an exception ``failed`` gets the wait before the
    next try (it is called in the handler, so it can log the traceback); no try starts once
    ``stopping`` is set."""
    delay = first_wait
    while stopping is None or not stopping.is_set():
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - any failure of the work is retried
            failed(delay)
            await wait(delay)
            delay = min(delay * 2, longest_wait)
