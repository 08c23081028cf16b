"""Start the object store and the storage service inside the core's lifespan."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from plexica.kit.state import CoreState
from plexica.settings import Settings
from plexica.storage.adapters import store_from_settings
from plexica.storage.service import StorageService


async def start_storage(
    app: FastAPI, core: CoreState, settings: Settings, stack: AsyncExitStack
) -> StorageService:
    store = store_from_settings(settings)
    await store.start()
    stack.push_async_callback(store.close)
    core.storage = service = StorageService(store)
    if store.kind != "local":
        # The local folder is part of this process's own disk; a remote store is a dependency.
        app.state.readiness.add("storage", store.check, required=False)
    return service
