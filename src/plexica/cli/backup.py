"""`plexica backup tenant` and `plexica restore tenant`: a whole tenant in one tar (ADR 0171)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from plexica.cli.common import DataDirOpt, UrlOpt, fail, platform_settings
from plexica.cli.progress import bar

if TYPE_CHECKING:
    from plexica.backup.tenant import Platform
    from plexica.settings import Settings

backup_app = typer.Typer(no_args_is_help=True, help="Back up a tenant (record, users, data).")
restore_app = typer.Typer(no_args_is_help=True, help="Restore a tenant from a backup archive.")
T = TypeVar("T")

SchemaOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--schema-only",
        help="Only the schema and the files, without the tenant record (no tenant needed).",
    ),
]


@asynccontextmanager
async def _platform(settings: Settings, plugin_ids: list[str]) -> AsyncIterator[Platform]:
    """The platform's services on its database; the readiness check of each plugin reaches it
    at ``PLEXICA_PLUGIN_URLS`` or its distribution run in-process (as ``plugin install``)."""
    from plexica.backup.tenant import Platform
    from plexica.composition import build_services, identity_adapter
    from plexica.kit.db import Database
    from plexica.plugins.loader import PluginNotFoundError, load_plugin_app
    from plexica.plugins.service import HttpReadinessProbe, Installer
    from plexica.plugins.wiring import plugin_urls
    from plexica.storage.adapters import store_from_settings
    from plexica_sdk.app import PluginConfig

    store = store_from_settings(settings)
    db = Database(settings.sqlalchemy_url, pool_size=4)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(db.dispose)
        await store.start()
        stack.push_async_callback(store.close)
        endpoints: dict[str, Any] = plugin_urls(settings)
        for plugin_id in plugin_ids:
            if plugin_id in endpoints:
                continue
            try:
                app = load_plugin_app(
                    plugin_id, PluginConfig(database_url=str(settings.database_url))
                )
            except PluginNotFoundError:
                continue
            await stack.enter_async_context(app.router.lifespan_context(app))
            endpoints[plugin_id] = app
        identity = identity_adapter(settings, db)
        installer = Installer(db, HttpReadinessProbe(endpoints))
        services = build_services(settings, db, installer=installer, store=store, identity=identity)
        await services.start()
        stack.push_async_callback(services.stop)
        yield Platform(str(settings.database_url), db, store, services.tenants, identity, installer)


def _run(job: Callable[[], Coroutine[Any, Any, str]]) -> None:
    import asyncio

    from plexica_sdk.errors import PlexicaError

    try:
        typer.echo(asyncio.run(job()))
    except PlexicaError as exc:
        message = " ".join(exc.message.split())  # one line, whatever the cause's text
        raise fail(f"{exc.code}: {message}", code=1) from None


@backup_app.command("tenant")
def backup_tenant(
    slug: str,
    out: Annotated[Path, typer.Option(help="The archive to write (.tar).")],
    schema_only: SchemaOnlyOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Write the tenant (record, realm users, plugin installations, flag targeting), its schema
    (pg_dump) and every object of its bucket to one archive."""
    settings = platform_settings("cli", data_dir, url)
    from plexica.backup import service, tenant

    async def run() -> str:
        async with _platform(settings, []) as p:
            with bar(f"backing up {slug}: objects") as advance:
                if schema_only:
                    s = await service.backup_tenant(p.database_url, p.store, slug, out, advance)
                else:
                    s = await tenant.backup(p, slug, out, advance)
        return f"backed up {s.slug}: {s.objects} objects, {s.bytes} bytes in {s.seconds:.1f}s"

    _run(run)


@restore_app.command("tenant")
def restore_tenant(
    archive: Path,
    as_slug: Annotated[str | None, typer.Option("--as", help="Restore under another slug.")] = None,
    schema_only: SchemaOnlyOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Make a new tenant from an archive: record, realm and users, plugins, flags, schema and
    files. Refuses a slug in use; a failed restore is rolled back, and running it again after a
    crash finishes it."""
    settings = platform_settings("cli", data_dir, url)
    from plexica.backup import service, tenant

    async def run() -> str:
        plugin_ids = (
            [] if schema_only else [i.plugin_id for i in tenant.read_saved(archive)[1].plugins]
        )
        async with _platform(settings, plugin_ids) as p:
            with bar(f"restoring {archive.name}: objects") as advance:
                if schema_only:
                    s = await service.restore_tenant(
                        p.database_url, p.store, archive, as_slug=as_slug, db=p.db,
                        progress=advance,
                    )  # fmt: skip
                else:
                    s = await tenant.restore(p, archive, as_slug, advance)
        return tenant.summary_line(s)

    _run(run)
