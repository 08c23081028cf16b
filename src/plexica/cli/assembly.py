"""What ``plexica up`` runs once its database is there: the migrations and the bootstrap, then
the core, the mounted plugins and the web shell behind the embedded edge.

The web stack, SQLAlchemy and the plugins load with this module; ``plexica up`` imports it
while the embedded PostgreSQL starts, so the two overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import structlog
from fastapi import FastAPI

from plexica.app import create_app
from plexica.events.runtime import plugin_event_buses
from plexica.gateway.embedded import create_edge_app
from plexica.identity import sealed
from plexica.identity.bootstrap import OperatorCredentials, bootstrap
from plexica.identity.service import sync_web_callbacks
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.server import serve
from plexica.plugins import devroutes
from plexica.plugins.embedded import mount_plugins
from plexica.plugins.shipped import register_shipped_plugins
from plexica.settings import Settings
from plexica.tenants.fleet import migrate_fleet
from plexica.web.app import create_web_app
from plexica.web.session import with_persisted_secret
from plexica_sdk.events import EventBus

log = structlog.get_logger("plexica.up")
Phase = Callable[[str], AbstractContextManager[None]]


async def prepare_database(
    settings: Settings, data_dir: Path, phase: Phase
) -> OperatorCredentials | None:
    """Migrate the platform and the tenants, register the shipped plugins and, without
    Keycloak, make the operator on a first start (returned: its password is shown once)."""
    db = Database(settings.sqlalchemy_url, pool_size=2)
    try:
        with phase("platform_migrations"):
            await upgrade_platform(db)
        if settings.keycloak_url is None:
            with phase("signing_keys"):
                await sealed.prepare(db)  # a wrong key stops start-up here; plaintext sealed
        with phase("tenant_migrations"):
            result = await migrate_fleet(db, concurrency=2)
        if not result.ok:
            log.error("tenant_migration_failed", **result.as_dict())
        with phase("shipped_plugins"):
            await register_shipped_plugins(db)
        if settings.keycloak_url is not None:
            return None
        operator = await bootstrap(db, settings.public_base_url, settings.operator_email, data_dir)
        await _sync_sign_in_urls(db, settings.public_base_url)
        return operator
    finally:
        await db.dispose()


def build_edge(settings: Settings, data_dir: Path) -> FastAPI:
    """The core, the mounted plugins and the web shell behind the embedded edge."""
    # The core's event runtime reads the plugins' event buses when it starts serving.
    event_buses: dict[str, EventBus] = {}
    core = create_app(settings, event_buses=event_buses)
    plugins = mount_plugins(core, settings)
    event_buses.update(plugin_event_buses(plugins))
    # The edge asks the core's gateway decision (plugin active included, from its cache).
    web = create_web_app(with_persisted_secret(settings, data_dir))
    return create_edge_app(
        core, web, plugins=plugins, remote=lambda slug: devroutes.lookup(data_dir, slug)
    )


def serve_edge(edge: FastAPI, settings: Settings, on_ready: Callable[[], None]) -> None:
    serve(edge, settings.host, settings.port, settings.shutdown_grace_seconds, on_ready)


async def _sync_sign_in_urls(db: Database, public_url: str) -> None:
    """Every realm's web client accepts the callback at this start's public URL (ADR 0131)."""
    async with db.session() as session:
        updated = await sync_web_callbacks(session, public_url)
    if updated:
        log.info("sign_in_urls_synced", realms=updated, public_url=public_url)
