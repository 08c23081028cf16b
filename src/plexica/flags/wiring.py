"""Start the flag cache, its change bus and the OpenFeature provider in a process's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import structlog
from openfeature import api as openfeature_api

from plexica.flags.cache import ChangeBus, FlagCache, LocalBus, RedisBus, resync_forever
from plexica.flags.service import FlagService
from plexica.kit.db import Database
from plexica.kit.state import CoreState
from plexica.settings import Settings
from plexica_sdk.flags import PlexicaFlagProvider

RESYNC_SECONDS = 5.0
_log = structlog.get_logger("plexica.flags")


async def start_flags(
    core: CoreState, settings: Settings, db: Database, stack: AsyncExitStack
) -> FlagService:
    cache = FlagCache(db)
    try:
        await cache.reload()
    except Exception:  # noqa: BLE001 - start anyway; /ready reports the database, resync retries
        _log.warning("flags not loaded at start; retrying in the background", exc_info=True)
    bus: ChangeBus = RedisBus(str(settings.redis_url)) if settings.redis_url else LocalBus()
    await bus.start(cache.reload_one)
    stack.push_async_callback(bus.close)
    task = asyncio.create_task(resync_forever(cache, RESYNC_SECONDS), name="flags-resync")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    service = FlagService(cache, bus)
    core.flags = service
    # Core code uses the standard OpenFeature API; it evaluates from this process's cache.
    openfeature_api.set_provider(PlexicaFlagProvider(cache.get))
    return service
