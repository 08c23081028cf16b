"""The broker's principals and ACLs: the platform's, and each plugin's derived from its catalog
versions (ADR 0218, 0253)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.acl import BrokerAdmin, PluginAccess, grant_platform, grant_plugin
from plexica.kit.db import Database
from plexica.kit.kafka import KafkaLogin
from plexica.plugins import service
from plexica.plugins.repository import logins as logins_repo
from plexica.plugins.schemas import VersionStatus
from plexica.settings import Settings
from plexica_sdk.manifest import stored_manifest

log = structlog.get_logger("plexica.plugins.broker")


async def event_types(session: AsyncSession, plugin_id: str) -> tuple[set[str], set[str]]:
    """(consumed, emitted) event types over the plugin's versions that may run: every
    registered or published one (an upgrade runs two side by side), not the deprecated."""
    consumes: set[str] = set()
    emits: set[str] = set()
    for version in await service.list_versions(session, plugin_id):
        if version.status is VersionStatus.DEPRECATED:
            continue
        manifest = stored_manifest(version.manifest)
        consumes |= {e.type for e in manifest.events.consumes}
        emits |= {e.type for e in manifest.events.emits}
    return consumes, emits


async def sync_plugin(session: AsyncSession, admin: BrokerAdmin, plugin_id: str) -> PluginAccess:
    """The plugin's principal (its password derived from its database login's, made if
    missing) and exactly the ACLs its versions call for."""
    login = await service.ensure_login(session, plugin_id)
    consumes, emits = await event_types(session, plugin_id)
    return await grant_plugin(admin, plugin_id, login.password.get_secret_value(), consumes, emits)


def broker_admin(settings: Settings) -> BrokerAdmin | None:
    """The broker's administrator, when this process holds its login (the grants job only)."""
    login = settings.kafka_admin_login()
    if not settings.kafka_brokers or login is None:
        return None
    return BrokerAdmin(settings.kafka_brokers, login)


async def reconcile(
    db: Database, admin: BrokerAdmin, platform: KafkaLogin | None = None
) -> dict[str, PluginAccess]:
    """The platform's principal (given its login) and every catalogued plugin that has a
    database login get their broker login and ACLs (one without a login has no credentials to
    hand out yet: `plexica plugin credentials` makes both)."""
    if platform is not None:
        await grant_platform(admin, platform)
    out: dict[str, PluginAccess] = {}
    async with db.session() as session:
        plugin_ids = sorted({v.plugin_id for v in await service.list_versions(session)})
    for plugin_id in plugin_ids:
        async with db.session() as session:
            row = await logins_repo.get_plugin_login(session, plugin_id)
            if row is None:
                continue
            consumes, emits = await event_types(session, plugin_id)
        out[plugin_id] = await grant_plugin(admin, plugin_id, row["password"], consumes, emits)
    return out


async def keep_reconciled(
    db: Database, settings: Settings, admin: BrokerAdmin, heartbeat: Path | None = None
) -> None:
    """The grants job's watch: a version registered, published or deprecated through the API or
    the CLI takes effect within one period. ``heartbeat`` is touched after each pass that
    succeeded (a container's health check reads its age)."""
    while True:
        try:
            await reconcile(db, admin, settings.kafka_login())
            if heartbeat is not None:
                await asyncio.to_thread(heartbeat.touch)
        except Exception as exc:  # noqa: BLE001 - the broker or database is back next period
            log.warning("broker_acl_reconcile_failed", error=repr(exc))
        await asyncio.sleep(settings.broker_acl_seconds)
