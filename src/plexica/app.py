"""The core API service: ``create_app()`` is its composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from plexica import __version__
from plexica.flags.api import router as flags_router
from plexica.flags.wiring import start_flags
from plexica.kit.db import Database
from plexica.kit.probes import add_dependency_checks
from plexica.kit.security import TokenVerifier
from plexica.settings import Settings
from plexica.storage.api import router as files_router
from plexica.storage.wiring import start_storage
from plexica_sdk.service import create_service_app

API_PREFIX = "/v1"


def create_app(
    settings: Settings, db: Database | None = None, verifier: TokenVerifier | None = None
) -> FastAPI:
    """The core API. ``db`` and ``verifier`` are passed in when the caller owns them (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = db is None
        database = db or Database(
            settings.sqlalchemy_url,
            pool_size=settings.database_pool_size,
            statement_timeout_ms=settings.database_statement_timeout_ms,
        )
        app.state.db = database
        add_dependency_checks(app.state.readiness, settings, database)
        try:
            async with AsyncExitStack() as stack:
                await start_storage(app, settings, stack)
                await start_flags(app, settings, database, stack)
                yield
        finally:
            if own:
                await database.dispose()

    app = create_service_app(
        "core",
        title="Plexica core API",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = verifier
    # Routers carry their full prefix (APIRouter(prefix=...)): include_router(prefix=...) would
    # leave the un-prefixed template in the scope, and metrics label routes by template.
    app.include_router(_info_router())
    app.include_router(files_router)
    app.include_router(flags_router)
    return app


def _info_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, tags=["platform"])

    @router.get("/info", summary="Version and mode of this deployment")
    async def info() -> dict[str, str]:
        return {"name": "plexica", "version": __version__}

    return router
