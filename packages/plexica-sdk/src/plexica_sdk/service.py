"""The app factory every Plexica service is built with: errors, logs, metrics, health, ready."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from plexica_sdk.errors import install_error_handlers
from plexica_sdk.health import Readiness, health_router
from plexica_sdk.observability import RequestContextMiddleware

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def create_service_app(
    service: str,
    *,
    title: str,
    version: str,
    readiness: Readiness | None = None,
    lifespan: Lifespan | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    app = FastAPI(title=title, version=version, lifespan=lifespan, **fastapi_kwargs)
    app.state.service = service
    app.state.readiness = readiness or Readiness()
    install_error_handlers(app)
    app.include_router(health_router(app.state.readiness))
    app.add_middleware(RequestContextMiddleware, service=service)
    return app


__all__ = ["Readiness", "create_service_app"]
