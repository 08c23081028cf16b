"""``plexica plugin ...``: the catalog, installations per tenant, and the developer loop."""

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
    DataDirOpt,
    JsonOpt,
    UrlOpt,
    echo_json,
    fail,
    key_values,
    platform_settings,
    table,
    to_jsonable,
)
from plexica.cli.progress import bar

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


def _echo(value: Any, as_json: bool = False) -> None:
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


def _run(
    job: Callable[[Settings, Database], Awaitable[T]],
    data_dir: Path | None = None,
    url: str | None = None,
) -> T:
    settings = platform_settings("cli", data_dir, url)
    from plexica.kit.db import Database
    from plexica_sdk.errors import PlexicaError
    from plexica_sdk.observability import configure_logging

    # Logs go to stderr: stdout carries the command's JSON output.
    configure_logging("cli", "WARNING", "console")

    async def main() -> T:
        db = Database(settings.sqlalchemy_url, pool_size=2)
        try:
            return await job(settings, db)
        finally:
            await db.dispose()

    try:
        import asyncio

        return asyncio.run(main())
    except PlexicaError as exc:
        details = f" {json.dumps(exc.details, default=str)}" if exc.details else ""
        raise fail(f"{exc.code}: {exc.message}{details}", code=EXIT_REFUSED) from None


def _installations(api: Api, slug: str, tenant_id: UUID | None) -> str:
    return f"/v1/tenants/{tenant_id or api.tenant_id(slug)}/plugins"


async def _tenant(db: Database, slug: str, tenant_id: UUID | None) -> TenantRef:
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


async def _with_installer(
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


def _installer(db: Database) -> Installer:
    """For lifecycle steps that do not check the plugin's readiness."""
    from plexica.plugins.service import HttpReadinessProbe, Installer

    return Installer(db, HttpReadinessProbe({}))


@plugin_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of plexica-plugin.yaml."""
    from plexica_sdk.manifest import manifest_json_schema

    typer.echo(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))


@plugin_app.command("list")
def list_(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Installations of a tenant.")
    ] = None,
    tenant_id: TenantIdOpt = None,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Catalog versions, or a tenant's installations with --tenant."""
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        path = "/v1/plugins" if tenant is None else _installations(api, tenant, tenant_id)
        _echo(api.call("GET", path), as_json)
        return
    from plexica.plugins import service

    async def job(_: Settings, db: Database) -> Any:
        if tenant is None:
            async with db.session() as s:
                return await service.list_versions(s)
        ref = await _tenant(db, tenant, tenant_id)
        async with db.session() as s:
            return await service.list_installations(s, ref.id)

    _echo(_run(job, data_dir, url), as_json)


async def _register(db: Database, path: Path, publish: bool) -> Any:
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


@plugin_app.command("register")
def register(
    path: Annotated[Path, typer.Argument(help="plexica-plugin.yaml or its folder.")],
    publish: Annotated[bool, typer.Option(help="Publish right away.")] = False,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Register a plugin version from its manifest (and migrations folder)."""
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        from plexica_sdk.manifest import load_manifest, load_migrations

        root = path if path.is_dir() else path.parent
        manifest = load_manifest(path)
        migrations = [{"name": n, "sql": q} for n, q in load_migrations(manifest, root)]
        body = {"manifest": manifest.model_dump(mode="json"), "migrations": migrations}
        out = api.call("POST", "/v1/plugins", body)
        if publish:
            where = f"/v1/plugins/{out['plugin_id']}/versions/{out['version']}/publish"
            out = api.call("POST", where)
        _echo(out, as_json)
        return

    async def job(_: Settings, db: Database) -> Any:
        return await _register(db, path, publish)

    _echo(_run(job, data_dir, url), as_json)


def _status_command(name: str, status: str, doc: str) -> None:
    def command(
        plugin_id: str,
        version: str,
        *,
        as_json: JsonOpt = False,
        data_dir: DataDirOpt = None,
        url: UrlOpt = None,
    ) -> None:
        api = reach(data_dir, url, as_json=as_json)
        if api is not None:
            _echo(api.call("POST", f"/v1/plugins/{plugin_id}/versions/{version}/{name}"), as_json)
            return
        from plexica.plugins import service
        from plexica.plugins.schemas import VersionStatus

        async def job(_: Settings, db: Database) -> Any:
            async with db.session() as s:
                return await service.set_status(s, plugin_id, version, VersionStatus(status))

        _echo(_run(job, data_dir, url), as_json)

    command.__doc__ = doc
    plugin_app.command(name)(command)


_status_command("publish", "published", "Make a registered version installable.")
_status_command("deprecate", "deprecated", "Stop new installs of a version.")


@plugin_app.command("install")
def install(  # noqa: PLR0917 - typer maps parameters to options
    plugin_id: str,
    tenant: TenantOpt,
    tenant_id: TenantIdOpt = None,
    version: Annotated[str | None, typer.Option(help="Default: newest published.")] = None,
    settings_json: Annotated[str, typer.Option("--settings", help="JSON object.")] = "{}",
    plugin_url: PluginUrlOpt = None,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Install a plugin into a tenant (rolled back entirely on any failure)."""
    try:
        values = json.loads(settings_json)
    except ValueError:
        raise fail("--settings must be a JSON object") from None
    api = None if plugin_url else reach(data_dir, url, as_json=as_json)
    if api is not None:
        body = {"plugin_id": plugin_id, "version": version, "settings": values}
        _echo(api.call("POST", _installations(api, tenant, tenant_id), body), as_json)
        return

    async def job(settings: Settings, db: Database) -> Any:
        ref = await _tenant(db, tenant, tenant_id)
        return await _with_installer(
            settings,
            db,
            plugin_id,
            plugin_url,
            lambda i: i.install(ref, plugin_id, version, values),
        )

    _echo(_run(job, data_dir, url), as_json)


def _lifecycle(
    name: str, doc: str, call: Callable[[Installer, TenantRef, str], Awaitable[Any]]
) -> None:
    def command(
        plugin_id: str,
        tenant: TenantOpt,
        tenant_id: TenantIdOpt = None,
        *,
        as_json: JsonOpt = False,
        data_dir: DataDirOpt = None,
        url: UrlOpt = None,
    ) -> None:
        api = reach(data_dir, url, as_json=as_json)
        if api is not None:
            where = f"{_installations(api, tenant, tenant_id)}/{plugin_id}/{name}"
            _echo(api.call("POST", where), as_json)
            return

        async def job(settings: Settings, db: Database) -> Any:
            ref = await _tenant(db, tenant, tenant_id)
            return await call(_installer(db), ref, plugin_id)

        _echo(_run(job, data_dir, url), as_json)

    command.__doc__ = doc
    plugin_app.command(name)(command)


_lifecycle(
    "enable",
    "Let the tenant's traffic reach the plugin again.",
    lambda i, t, p: i.set_enabled(t, p, True),
)
_lifecycle(
    "disable",
    "Stop traffic and events at once; data is kept.",
    lambda i, t, p: i.set_enabled(t, p, False),
)


@plugin_app.command("uninstall")
def uninstall(
    plugin_id: str,
    tenant: TenantOpt,
    tenant_id: TenantIdOpt = None,
    purge: Annotated[bool, typer.Option(help="Drop the data now instead of keeping it.")] = False,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Uninstall; the data is kept for the retention window unless --purge."""
    api = reach(data_dir, url, as_json=as_json)
    if api is not None:
        where = f"{_installations(api, tenant, tenant_id)}/{plugin_id}"
        out = api.call("DELETE", where, params={"purge": "true" if purge else "false"})
        _echo(out if out is not None else {"plugin_id": plugin_id, "purged": True}, as_json)
        return

    async def job(_: Settings, db: Database) -> Any:
        ref = await _tenant(db, tenant, tenant_id)
        return await _installer(db).uninstall(ref, plugin_id, purge=purge)

    out = _run(job, data_dir, url)
    _echo(out if out is not None else {"plugin_id": plugin_id, "purged": True}, as_json)


@plugin_app.command("upgrade")
def upgrade(
    plugin_id: str,
    tenant: TenantOpt,
    tenant_id: TenantIdOpt = None,
    version: Annotated[str | None, typer.Option(help="Default: newest published.")] = None,
    plugin_url: PluginUrlOpt = None,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Upgrade to a newer version: only the new migrations run, rolled back on failure."""
    api = None if plugin_url else reach(data_dir, url, as_json=as_json)
    if api is not None:
        where = f"{_installations(api, tenant, tenant_id)}/{plugin_id}/upgrade"
        _echo(api.call("POST", where, {"version": version}), as_json)
        return

    async def job(settings: Settings, db: Database) -> Any:
        ref = await _tenant(db, tenant, tenant_id)
        return await _with_installer(
            settings, db, plugin_id, plugin_url, lambda i: i.upgrade(ref, plugin_id, version)
        )

    _echo(_run(job, data_dir, url), as_json)


@plugin_app.command("upgrade-all")
def upgrade_all(
    plugin_id: str,
    version: Annotated[str | None, typer.Option(help="Default: newest published.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32)] = 4,
    plugin_url: PluginUrlOpt = None,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Upgrade every tenant that has the plugin (resumable; one failure stops no other)."""

    async def job(settings: Settings, db: Database) -> Any:
        return await _with_installer(
            settings,
            db,
            plugin_id,
            plugin_url,
            lambda i: i.upgrade_fleet(
                plugin_id, version, concurrency=concurrency, progress=advance
            ),
        )

    with bar(f"upgrading {plugin_id}: tenants", quiet=as_json) as advance:
        results = _run(job, data_dir, url)
    if as_json:
        echo_json(results)
    else:
        rows = [{"tenant": k, "result": v} for k, v in results.items()]
        table(rows, ["tenant", "result"], empty=f"no tenant has {plugin_id}")
    if any(v not in ("upgraded", "current") for v in results.values()):
        raise typer.Exit(1)


@plugin_app.command("settings")
def settings_(
    plugin_id: str,
    tenant: TenantOpt,
    tenant_id: TenantIdOpt = None,
    *,
    set_json: Annotated[
        str | None, typer.Option("--set", help="Replace the settings with this JSON object.")
    ] = None,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Show, or with --set replace, a tenant's settings (validated by the plugin's schema)."""
    values = None
    if set_json is not None:
        try:
            values = json.loads(set_json)
        except ValueError:
            raise fail("--set must be a JSON object") from None

    from plexica.plugins import service

    async def job(_: Settings, db: Database) -> Any:
        ref = await _tenant(db, tenant, tenant_id)
        if values is None:
            async with db.session() as s:
                return (await service.get_installation(s, ref.id, plugin_id)).settings
        out = await _installer(db).update_settings(ref, plugin_id, values)
        return out.settings

    echo_json(_run(job, data_dir, url))  # settings are JSON in and out


@plugin_app.command("credentials")
def credentials(
    plugin_id: str,
    rotate: Annotated[bool, typer.Option(help="Set a new password (the old one stops).")] = False,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """The plugin's own database login, created if missing: the URL to give its process as
    PLEXICA_PLUGIN_DATABASE_URL (it reaches only the plugin's tables where it is active).
    With an authenticating broker (PLEXICA_KAFKA_USERNAME), also its broker login, for
    PLEXICA_KAFKA_USERNAME/PASSWORD, and the ACLs of its manifests (ADR 0218)."""
    from plexica.plugins import broker, service
    from plexica.plugins.schemas import PluginNotFoundError

    async def job(settings: Settings, db: Database) -> Any:
        async with db.session() as s:
            if not await service.list_versions(s, plugin_id):
                raise PluginNotFoundError(f"no plugin {plugin_id} in the catalog")
            if rotate:
                login = await service.rotate_login(s, plugin_id)
            else:
                login = await service.ensure_login(s, plugin_id, sync=True)
        out = {
            "plugin_id": plugin_id,
            "role": login.role,
            "database_url": login.database_url(str(settings.database_url)),
        }
        admin = broker.broker_admin(settings)
        if admin is not None:
            async with db.session() as s:
                access = await broker.sync_plugin(s, admin, plugin_id)
            out |= {
                "kafka_username": access.login.username,
                "kafka_password": access.login.password,
            }
        return out

    _echo(_run(job, data_dir, url), as_json)


@plugin_app.command("broker-acls")
def broker_acls(
    *, as_json: JsonOpt = False, data_dir: DataDirOpt = None, url: UrlOpt = None
) -> None:
    """Make the broker's plugin logins and ACLs equal to the catalog now (the worker does it
    every PLEXICA_BROKER_ACL_SECONDS): one row per plugin with a login and what it may do."""
    from plexica.plugins import broker

    async def job(settings: Settings, db: Database) -> Any:
        admin = broker.broker_admin(settings)
        if admin is None:
            raise fail("the broker takes no login: set PLEXICA_KAFKA_BROKERS, _USERNAME, _PASSWORD")
        done = await broker.reconcile(db, admin)
        return [
            {
                "plugin_id": plugin_id,
                "principal": access.login.username,
                "grants": " ".join(
                    f"{g.operation}:{g.resource}:{g.name}" for g in sorted(access.grants)
                ),
            }
            for plugin_id, access in done.items()
        ]

    rows = _run(job, data_dir, url)
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["plugin_id", "principal", "grants"], empty="no plugin has a login")


@plugin_app.command("new")
def new(
    slug: Annotated[str, typer.Argument(help="The plugin's id: lower-case letters and digits.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to create it (default: ./<slug>).")
    ] = None,
) -> None:
    """Scaffold a working plugin: manifest, migration, app, template and a test."""
    from plexica.plugins.scaffold import ScaffoldError, scaffold

    try:
        target = scaffold(slug, directory or Path(slug))
    except ScaffoldError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created plugin {slug} in {target}")


@plugin_app.command("testdb")
def testdb(
    action: Annotated[str, typer.Argument(help="start or stop")],
    directory: Annotated[Path, typer.Option("--dir", help="The server's data folder.")],
) -> None:
    """A throwaway local PostgreSQL for plugin tests (the SDK test kit uses it): ``start``
    prints its URL; ``stop`` stops it."""
    from plexica.kit.pgserver import EmbeddedPostgres, EmbeddedPostgresError

    pg_file = directory / "port"
    try:
        if action == "start":
            pg = EmbeddedPostgres(directory, database="postgres")
            pg.start()
            pg_file.write_text(str(pg.port))
            # The owner role, no superuser; it may create the kit's databases (ADR 0111).
            typer.echo(pg.owner_url(createdb=True))
        elif action == "stop":
            if pg_file.exists():
                EmbeddedPostgres(
                    directory, port=int(pg_file.read_text()), database="postgres"
                ).stop()
        else:
            raise fail("action is start or stop")
    except EmbeddedPostgresError as exc:
        raise fail(str(exc)) from None
