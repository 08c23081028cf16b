"""The core API service: ``create_app()`` is its composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from plexica import __version__
from plexica.audit.api import router as audit_router
from plexica.composition import build_services
from plexica.events import api as events_api
from plexica.events.catalog import schema_base
from plexica.events.runtime import EventRuntime
from plexica.flags.api import router as flags_router
from plexica.flags.wiring import start_flags
from plexica.gateway.api import router as gateway_router
from plexica.gateway.wiring import start_gateway
from plexica.identity import mfa_api, oidc_company, policy_api, sso_api
from plexica.identity.api import me_router, roles_router, service_clients_router, users_router
from plexica.identity.invites_api import router as invites_router
from plexica.identity.oidc import keys_router as oidc_keys_router
from plexica.identity.oidc import router as oidc_router
from plexica.identity.support_api import router as support_router
from plexica.identity.wiring import identity_lifespan
from plexica.kit.db import Database
from plexica.kit.probes import add_dependency_checks
from plexica.kit.security import TokenVerifier
from plexica.kit.state import CoreState
from plexica.mail.api import router as dev_mail_router
from plexica.plugins import wiring as plugins_wiring
from plexica.plugins.api import (
    catalog_router,
    installations_router,
    tenant_catalog_router,
    ui_router,
)
from plexica.settings import Settings
from plexica.storage.api import router as files_router
from plexica.storage.wiring import start_storage
from plexica.tenants import api as tenants_api
from plexica.tenants.reconciler import Reconciler
from plexica_sdk.events import EventBus
from plexica_sdk.service import create_service_app

API_PREFIX = "/v1"


def create_app(
    settings: Settings,
    db: Database | None = None,
    verifier: TokenVerifier | None = None,
    event_buses: Mapping[str, EventBus] | None = None,
) -> FastAPI:
    """The core API. ``db`` and ``verifier`` are passed in when the caller owns them (tests).

    ``event_buses`` (the embedded mode) makes this process run the outbox relay and deliver
    events to those plugins in-process."""
    core = CoreState(settings=settings, verifier=verifier)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = db is None
        database = db or Database(
            settings.sqlalchemy_url,
            pool_size=settings.database_pool_size,
            statement_timeout_ms=settings.database_statement_timeout_ms,
        )
        async with AsyncExitStack() as stack:
            if own:
                stack.push_async_callback(database.dispose)
            core.db = database
            add_dependency_checks(app.state.readiness, settings, database)
            installer = plugins_wiring.attach(core, settings, database)
            storage = await start_storage(app, core, settings, stack)
            await start_flags(core, settings, database, stack)
            await stack.enter_async_context(identity_lifespan(core, settings, database))
            services = build_services(
                settings,
                database,
                installer=installer,
                store=storage.store,
                identity=core.identity,
                mailer=core.mailer,
            )
            core.services = services
            await services.start()
            stack.push_async_callback(services.stop)
            if settings.reconcile_seconds > 0:
                reconciler = Reconciler(
                    services.tenants,
                    plugins=installer,
                    interval=settings.reconcile_seconds,
                )
                await stack.enter_async_context(reconciler.running())
            await start_gateway(core, settings, database, services.tenants.cache, stack)
            if event_buses is not None:
                runtime = EventRuntime(
                    database,
                    event_buses,
                    kafka_brokers=settings.kafka_brokers,
                    schema_base=schema_base(settings),
                    kafka_login=settings.kafka_login(),
                )
                core.events = await stack.enter_async_context(runtime)
            yield

    app = create_service_app(
        "core",
        title="Plexica core API",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.core = core
    # Routers carry their full prefix (APIRouter(prefix=...)): include_router(prefix=...) would
    # leave the un-prefixed template in the scope, and metrics label routes by template.
    # Routes are matched in order: the edge's decision, asked about every request, comes first
    # (no other route shares its /v1/gateway prefix).
    app.include_router(gateway_router)
    app.include_router(_info_router())
    for router in (
        oidc_router,
        oidc_keys_router,
        oidc_company.router,
        me_router,
        mfa_api.router,
        mfa_api.users_router,
        policy_api.policy_router,
        policy_api.me_router,
        sso_api.router,
    ):
        app.include_router(router)
    app.include_router(users_router)
    app.include_router(invites_router)
    app.include_router(support_router)
    app.include_router(roles_router)
    app.include_router(service_clients_router)
    app.include_router(audit_router)
    app.include_router(catalog_router())
    app.include_router(installations_router())
    app.include_router(tenant_catalog_router())
    app.include_router(ui_router())

    app.include_router(tenants_api.operator_router)
    app.include_router(tenants_api.tenant_router)
    app.include_router(tenants_api.health_router)
    app.include_router(events_api.router)
    app.include_router(files_router)
    app.include_router(flags_router)
    app.include_router(dev_mail_router)
    return app


def _info_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, tags=["platform"])

    @router.get("/info", summary="Version and mode of this deployment")
    async def info() -> dict[str, str]:
        return {"name": "plexica", "version": __version__}

    return router
