"""The app factory every Plexica service is built with: errors, logs, metrics, health, ready."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from plexica_sdk.errors import install_error_handlers
from plexica_sdk.guard import DEFAULT_BODY_LIMIT, InputGuard
from plexica_sdk.health import Readiness, health_router
from plexica_sdk.observability import MAX_IN_FLIGHT, RequestContextMiddleware
from plexica_sdk.openapi import install_error_docs

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def create_service_app(
    service: str,
    *,
    title: str,
    version: str,
    readiness: Readiness | None = None,
    lifespan: Lifespan | None = None,
    body_limit: int | None = DEFAULT_BODY_LIMIT,
    inspect_bodies: bool = True,
    max_in_flight: int | None = MAX_IN_FLIGHT,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """``body_limit`` and ``inspect_bodies`` are the ``InputGuard``'s: an edge in front of
    services leaves their bodies to them. Past ``max_in_flight`` requests at once the process
    answers 503 ``overloaded`` (ADR 0255)."""
    app = FastAPI(title=title, version=version, lifespan=lifespan, **fastapi_kwargs)
    app.state.service = service
    app.state.readiness = readiness or Readiness()
    install_error_handlers(app)
    install_error_docs(app)
    app.include_router(health_router(app.state.readiness))
    app.add_middleware(InputGuard, body_limit=body_limit, inspect_bodies=inspect_bodies)
    app.add_middleware(RequestContextMiddleware, service=service, max_in_flight=max_in_flight)
    return app


__all__ = ["Readiness", "create_service_app"]
