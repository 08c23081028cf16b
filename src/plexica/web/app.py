"""The web shell: server-rendered pages for operators, tenant admins and members (ADR 0090).
This module composes them: the shared ``Shell`` (``shell.py``) and one module per area."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from plexica import __version__
from plexica.settings import Settings
from plexica.web.audit_page import audit_routes
from plexica.web.auth import auth_routes
from plexica.web.company_signin import company_signin_routes
from plexica.web.console import console_routes
from plexica.web.console_flags import console_flags_routes
from plexica.web.invites import invite_routes
from plexica.web.plugin_forms import plugin_form_routes
from plexica.web.profile import profile_routes
from plexica.web.provisioning import provisioning_routes
from plexica.web.security import ShellSecurity
from plexica.web.sessions_page import sessions_routes
from plexica.web.shell import HERE, STATIC, Shell
from plexica.web.support import support_routes
from plexica.web.tenant_admin import register_host_tenant, register_tenant_admin
from plexica.web.tenant_plugins import tenant_plugin_routes
from plexica.web.workspace import workspace_routes
from plexica_sdk.service import create_service_app


def create_web_app(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    shell = Shell(settings, transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await shell.upstream.aclose()
        await shell.db.dispose()

    app = create_service_app(
        "web",
        title="Plexica web",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.shell = shell
    # No page without the sessions table: the database is what "ready" means here too.
    app.state.readiness.add("database", shell.db.ping)
    app.mount(STATIC, StaticFiles(directory=str(HERE / "static")), name="static")
    register_host_tenant(app, shell)
    # Outermost: refused requests reach no route, and every answer gets the headers.
    app.add_middleware(
        ShellSecurity, own_origins=shell.own_origins, refuse=shell.refuse_cross_site,
        form_targets=shell.form_targets(),
    )  # fmt: skip
    auth_routes(app, shell)
    console_routes(app, shell)
    workspace_routes(app, shell)
    register_tenant_admin(app, shell)
    tenant_plugin_routes(app, shell)
    provisioning_routes(app, shell)
    console_flags_routes(app, shell)
    plugin_form_routes(app, shell)
    sessions_routes(app, shell)
    invite_routes(app, shell)
    audit_routes(app, shell)
    profile_routes(app, shell)
    support_routes(app, shell)
    company_signin_routes(app, shell)
    return app
