"""``plexica migrate``: platform schema, then the tenant fleet with progress."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import structlog
import typer

from plexica.cli.common import fail, platform_settings
from plexica.cli.progress import bar
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.runtime_role import RuntimeRoleError, ensure_runtime_url
from plexica.tenants.fleet import FleetResult, Progress, migrate_fleet
from plexica_sdk.errors import PlexicaError
from plexica_sdk.logs import configure_logging

log = structlog.get_logger("plexica.migrate")


def run_migrate(
    *,
    wave: int | None,
    canary: str | None,
    concurrency: int,
    data_dir: Path | None,
    url: str | None = None,
) -> None:
    settings = platform_settings("migrate", data_dir, url)
    configure_logging("migrate", settings.log_level, settings.log_format)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    canaries = [s.strip() for s in (canary or "").split(",") if s.strip()]
    on_terminal = sys.stderr.isatty()

    async def main() -> FleetResult:
        db = Database(settings.sqlalchemy_url, pool_size=concurrency + 1)
        try:
            await upgrade_platform(db)
            log.info("platform_migrated")
            await _grant_runtime()
            if on_terminal:
                with bar("tenant schemas") as advance:
                    result = await migrate_fleet(
                        db,
                        concurrency=concurrency,
                        canary=canaries,
                        wave=wave,
                        progress=lambda p: advance(p.done, p.total),
                    )
            else:
                result = await migrate_fleet(
                    db, concurrency=concurrency, canary=canaries, wave=wave, progress=_log_progress
                )
            # What the tenant migrations created is the owner's until handed over.
            await _grant_runtime()
            return result
        finally:
            await db.dispose()

    async def _grant_runtime() -> None:
        if settings.runtime_database_url is not None:
            assert settings.database_url is not None
            await ensure_runtime_url(str(settings.database_url), str(settings.runtime_database_url))
            log.info("runtime_role_granted")

    try:
        result = asyncio.run(main())
    except PlexicaError as exc:
        raise fail(f"{exc.message} ({exc.code})") from None
    except RuntimeRoleError as exc:
        raise fail(str(exc)) from None
    log.info("fleet_migration_finished", **result.as_dict())
    if sys.stdout.isatty():
        typer.echo(
            f"platform up to date; tenant schemas at {result.head}:"
            f" {len(result.migrated)} migrated, {len(result.up_to_date)} already there,"
            f" {len(result.failed)} failed,"
            f" {len(result.not_started)} not started"
        )
        for slug, error in result.failed.items():
            typer.echo(f"  {slug}: {error}")
    else:
        typer.echo(json.dumps(result.as_dict()))
    if not result.ok:
        raise fail("tenant migration halted at the first failure; fix it and run again", code=1)


def _log_progress(p: Progress) -> None:
    step = max(1, p.total // 100)
    if p.error is not None:
        log.error(
            "fleet_migration_failed", tenant=p.slug, error=p.error, done=p.done, total=p.total
        )
    elif p.done % step == 0 or p.done == p.total:
        log.info(
            "fleet_migration_progress", done=p.done, total=p.total, tenant=p.slug, version=p.version
        )
