"""What every ``plexica plugin`` command shares: the Typer app, the tenant options, the output,
and running a job against the platform's database when no API is reachable."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer

from plexica.cli.api import Api, reach
from plexica.cli.common import (
    EXIT_REFUSED,
    echo_json,
    fail,
    key_values,
    platform_settings,
    table,
    to_jsonable,
)
from plexica.cli.database import run_on_database

if TYPE_CHECKING:
    from plexica.kit.db import Database
    from plexica.kit.provisioning import TenantRef
    from plexica.plugins.service import Installer
    from plexica.settings import Settings

plugin_app = typer.Typer(no_args_is_help=True, help="Plugin catalog and installations.")
T = TypeVar("T")

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's slug.")]
TenantIdOpt = Annotated[
    UUID | None, typer.Option("--tenant-id", help="The tenant's id (when not found by slug).")
]
PluginUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--plugin-url",
        help="Base URL of the running plugin, for its readiness check (on the database path;"
        " through the API the core checks the plugin it knows).",
    ),
]


VERSION_COLUMNS = ["plugin_id", "version", "status", "name", "core", "registered_at"]
INSTALL_COLUMNS = ["plugin_id", "version", "status", "reason", "updated_at"]


def show(value: Any, as_json: bool = False) -> None:
    """JSON with --json; else a table for a list, aligned ``key: value`` lines for one object."""
    if as_json:
        echo_json(value)
        return
    data = to_jsonable(value)
    if isinstance(data, list):
        columns = INSTALL_COLUMNS if data and "tenant_id" in data[0] else VERSION_COLUMNS
        table(data, [c for c in columns if not data or c in data[0]], empty="no plugins")
    elif isinstance(data, dict):
        key_values([(k, v) for k, v in data.items() if not isinstance(v, dict | list)])
    elif data is not None:
        typer.echo(str(data))


def run_job(
    job: Callable[[Settings, Database], Awaitable[T]],
    data_dir: Path | None = None,
    url: str | None = None,
) -> T:
    settings = platform_settings("cli", data_dir, url)
    from plexica_sdk.errors import PlexicaError
    from plexica_sdk.logs import configure_logging

    # Logs go to stderr: stdout carries the command's JSON output.
    configure_logging("cli", "WARNING", "console")
    try:
        return run_on_database(settings, lambda db: job(settings, db), pool_size=2)
    except PlexicaError as exc:
        details = f" {json.dumps(exc.details, default=str)}" if exc.details else ""
        raise fail(f"{exc.code}: {exc.message}{details}", code=EXIT_REFUSED) from None


def answer(
    through_api: Callable[[Api], Any] | None,
    job: Callable[[Settings, Database], Awaitable[Any]],
    data_dir: Path | None,
    url: str | None,
    as_json: bool,
) -> Any:
    """What the core's API answers (``through_api``) where the platform is reached through it,
    else what ``job`` returns run on the platform's database; with no ``through_api`` (a plugin
    at --plugin-url), always the database."""
    if through_api is not None and (api := reach(data_dir, url, as_json=as_json)) is not None:
        return through_api(api)
    return run_job(job, data_dir, url)


def installations_path(api: Api, slug: str, tenant_id: UUID | None) -> str:
    return f"/v1/tenants/{tenant_id or api.tenant_id(slug)}/plugins"


async def find_tenant(db: Database, slug: str, tenant_id: UUID | None) -> TenantRef:
    from plexica.kit.provisioning import TenantRef
    from plexica.plugins import service
    from plexica_sdk.errors import PlexicaError

    if tenant_id is not None:
        return TenantRef(tenant_id, slug, slug, "")
    async with db.session() as s:
        found = await service.tenant_by_slug(s, slug)
    if found is None:
        raise PlexicaError(f"no tenant {slug!r}; pass --tenant-id", code="tenant_not_found")
    return found


async def with_installer(
    settings: Settings,
    db: Database,
    plugin_id: str,
    plugin_url: str | None,
    job: Callable[[Installer], Awaitable[T]],
) -> T:
    """Run ``job`` with an installer whose readiness check reaches the plugin: at
    ``--plugin-url``, at ``PLEXICA_PLUGIN_URLS``, or the installed distribution run in-process."""
    from plexica.plugins.loader import PluginNotFoundError, load_plugin_app
    from plexica.plugins.service import HttpReadinessProbe, Installer
    from plexica.plugins.wiring import plugin_urls
    from plexica_sdk.app import PluginConfig

    endpoints: dict[str, Any] = plugin_urls(settings)
    if plugin_url:
        endpoints[plugin_id] = plugin_url
    async with AsyncExitStack() as stack:
        if plugin_id not in endpoints:
            try:
                app = load_plugin_app(
                    plugin_id, PluginConfig(database_url=str(settings.database_url))
                )
            except PluginNotFoundError:
                app = None
            if app is not None:
                await stack.enter_async_context(app.router.lifespan_context(app))
                endpoints[plugin_id] = app
        return await job(Installer(db, HttpReadinessProbe(endpoints)))


def lifecycle_installer(db: Database) -> Installer:
    """For lifecycle steps that do not check the plugin's readiness."""
    from plexica.plugins.service import HttpReadinessProbe, Installer

    return Installer(db, HttpReadinessProbe({}))


async def register_version(db: Database, path: Path, publish: bool) -> Any:
    from plexica.plugins import service
    from plexica.plugins.schemas import MigrationFile, VersionStatus
    from plexica_sdk.manifest import load_manifest, load_migrations

    root = path if path.is_dir() else path.parent  # noqa: ASYNC240 - a CLI run, nothing else waits
    manifest = load_manifest(path)
    migrations = [MigrationFile(name=n, sql=sql) for n, sql in load_migrations(manifest, root)]
    async with db.session() as s:
        out = await service.register(s, manifest.model_dump(mode="json"), migrations)
        if publish:
            out = await service.set_status(s, out.plugin_id, out.version, VersionStatus.PUBLISHED)
    return out
