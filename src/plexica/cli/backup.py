"""`plexica backup tenant` and `plexica restore tenant`: schema and files in one tar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plexica.cli.common import DataDirOpt, UrlOpt, fail, platform_settings
from plexica.cli.progress import bar

backup_app = typer.Typer(no_args_is_help=True, help="Back up a tenant (schema + files).")
restore_app = typer.Typer(no_args_is_help=True, help="Restore a tenant from a backup archive.")


@backup_app.command("tenant")
def backup_tenant(
    slug: str,
    out: Annotated[Path, typer.Option(help="The archive to write (.tar).")],
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Write the tenant's schema (pg_dump) and every object of its bucket to one archive."""
    settings = platform_settings("cli", data_dir, url)
    from plexica.backup.service import backup_tenant as run_backup
    from plexica.storage.adapters import store_from_settings
    from plexica_sdk.errors import PlexicaError

    async def run() -> str:
        store = store_from_settings(settings)
        await store.start()
        try:
            with bar(f"backing up {slug}: objects") as advance:
                s = await run_backup(str(settings.database_url), store, slug, out, advance)
        finally:
            await store.close()
        return f"backed up {s.slug}: {s.objects} objects, {s.bytes} bytes in {s.seconds:.1f}s"

    try:
        import asyncio

        typer.echo(asyncio.run(run()))
    except PlexicaError as exc:
        raise fail(f"{exc.code}: {exc.message}", code=1) from None


@restore_app.command("tenant")
def restore_tenant(
    archive: Path,
    as_slug: Annotated[str | None, typer.Option("--as", help="Restore under another slug.")] = None,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Recreate the tenant's schema and bucket from an archive (refuses to overwrite)."""
    settings = platform_settings("cli", data_dir, url)
    from plexica.backup.service import restore_tenant as run_restore
    from plexica.kit.db import Database
    from plexica.storage.adapters import store_from_settings
    from plexica_sdk.errors import PlexicaError

    async def run() -> str:
        store = store_from_settings(settings)
        db = Database(settings.sqlalchemy_url, pool_size=2)
        await store.start()
        try:
            with bar(f"restoring {archive.name}: objects") as advance:
                s = await run_restore(
                    str(settings.database_url), store, archive, as_slug=as_slug, db=db,
                    progress=advance,
                )  # fmt: skip
        finally:
            await store.close()
            await db.dispose()
        return f"restored {s.slug}: {s.objects} objects, {s.bytes} bytes in {s.seconds:.1f}s"

    try:
        import asyncio

        typer.echo(asyncio.run(run()))
    except PlexicaError as exc:
        raise fail(f"{exc.code}: {exc.message}", code=1) from None
