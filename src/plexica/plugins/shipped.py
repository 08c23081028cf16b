"""The plugins that ship with the platform (ADR 0130): every installed plugin distribution with
its manifest is registered and published in the catalog when ``plexica up`` starts, so a fresh
platform can install the CRM straight away and an upgraded one offers the new versions."""

from __future__ import annotations

import structlog

from plexica.kit.db import Database
from plexica.plugins import service
from plexica.plugins.dev import DevError, PluginSource, find_source
from plexica.plugins.loader import GROUP
from plexica.plugins.schemas import MigrationFile, PluginVersionOut, VersionStatus
from plexica_sdk.errors import PlexicaError
from plexica_sdk.manifest import load_migrations

log = structlog.get_logger("plexica.plugins")


def shipped_sources() -> list[PluginSource]:
    """The installed plugin distributions whose manifest is found beside their package."""
    from importlib.metadata import entry_points

    sources = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            sources.append(find_source(ep.name))
        except DevError as exc:
            log.warning("shipped_plugin_without_manifest", plugin=ep.name, error=str(exc))
    return sources


async def _publish(db: Database, source: PluginSource) -> PluginVersionOut | None:
    manifest = source.manifest
    async with db.session() as s:
        known = {v.version: v.status for v in await service.list_versions(s, manifest.id)}
    if known.get(manifest.version) not in (None, VersionStatus.REGISTERED):
        return None  # published already, or deprecated by an operator: left as it is
    async with db.session() as s:
        if manifest.version not in known:
            migrations = [
                MigrationFile(name=n, sql=sql) for n, sql in load_migrations(manifest, source.root)
            ]
            await service.register(s, manifest.model_dump(mode="json"), migrations)
        return await service.set_status(s, manifest.id, manifest.version, VersionStatus.PUBLISHED)


async def register_shipped_plugins(db: Database) -> list[PluginVersionOut]:
    """Register and publish each shipped plugin's current version once (idempotent; a second
    start changes nothing). A plugin whose dependency comes later is retried after it."""
    pending = shipped_sources()
    done: list[PluginVersionOut] = []
    while pending:
        failed: list[tuple[PluginSource, PlexicaError]] = []
        for source in pending:
            try:
                out = await _publish(db, source)
            except PlexicaError as exc:
                failed.append((source, exc))
                continue
            if out is not None:
                log.info("shipped_plugin_published", plugin=out.plugin_id, version=out.version)
                done.append(out)
        if len(failed) == len(pending):
            for source, error in failed:
                # One plugin that does not fit this core must not stop the platform.
                log.error(
                    "shipped_plugin_not_registered", plugin=source.plugin_id, error=error.message
                )
            break
        pending = [source for source, _ in failed]
    return done
