"""The in-process gateway of ``plexica up``: one port, routes to the core, plugins and web."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from plexica import __version__
from plexica_sdk.errors import error_response
from plexica_sdk.service import create_service_app

CORE_PREFIX = "/api/core"
PLUGINS_PREFIX = "/api/plugins/"
REALMS_PREFIX = "/realms"


class _AtRoot:
    """Gives the core ``/realms/...`` at its own root: OIDC issuers live at ``<public>/realms``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if root.endswith(self.prefix):
            scope = dict(scope, root_path=root[: -len(self.prefix)])
        await self.app(scope, receive, send)


class PluginGate(Protocol):
    async def allows(self, slug: str, path: str, scope: Scope) -> bool:
        """Whether the request may reach plugin ``slug`` (its tenant has it active)."""
        ...


class _PluginDispatch:
    """Routes ``/api/plugins/<slug>/...`` to the plugin mounted under that slug, for tenants
    the gate lets through; others get the answer of an unknown route."""

    def __init__(self, plugins: Mapping[str, ASGIApp], gate: PluginGate | None) -> None:
        self.plugins = plugins
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette keeps the full path in a mounted scope and the mount point in root_path.
        slug, _, rest = get_route_path(scope).lstrip("/").partition("/")
        app = self.plugins.get(slug)
        gated = app is not None and scope["type"] == "http" and self.gate is not None
        if gated and self.gate is not None and not await self.gate.allows(slug, "/" + rest, scope):
            app = None
        if app is None:
            response = error_response(404, "not_found", "no such route")
            await response(scope, receive, send)
            return
        await app(dict(scope, root_path=scope["root_path"] + "/" + slug), receive, send)


def create_edge_app(
    core: FastAPI,
    web: FastAPI,
    plugins: Mapping[str, FastAPI],
    gate: PluginGate | None = None,
) -> FastAPI:
    """Health, readiness and metrics of the edge are those of the core it fronts."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for app in (core, web, *plugins.values()):
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    edge = create_service_app(
        "gateway",
        title="Plexica",
        version=__version__,
        readiness=core.state.readiness,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    edge.mount(CORE_PREFIX, core)
    edge.mount(REALMS_PREFIX, _AtRoot(core, REALMS_PREFIX))
    edge.mount(PLUGINS_PREFIX.rstrip("/"), _PluginDispatch(plugins, gate))
    edge.mount("/", web)
    return edge
