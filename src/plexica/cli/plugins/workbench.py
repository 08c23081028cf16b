"""The plugin developer's workbench: ``plexica plugin new`` scaffolds a plugin, ``testdb`` runs a
throwaway PostgreSQL for its tests, and ``dev`` is the loop against the running platform (ADR
0077, 0134)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from plexica.cli.common import DataDirOpt, JsonOpt, UrlOpt, fail, platform_settings, running_db
from plexica.cli.plugins.common import (
    PluginUrlOpt,
    TenantIdOpt,
    find_tenant,
    plugin_app,
    register_version,
    run_job,
    show,
    with_installer,
)

if TYPE_CHECKING:
    from plexica.kit.db import Database
    from plexica.plugins.service import Installer
    from plexica.settings import Settings


def _sync(
    root: Path, tenant: str | None, tenant_id: UUID | None, plugin_url: str | None
) -> Callable[[Settings, Database], Awaitable[Any]]:
    """Migrate the platform, register and publish the plugin's version (once), and install it
    into the tenant (or upgrade it there); without a tenant, only the catalog."""
    from plexica.kit.migrate import upgrade_platform
    from plexica.plugins import service
    from plexica_sdk.errors import PlexicaError
    from plexica_sdk.manifest import load_manifest

    async def job(settings: Settings, db: Database) -> Any:
        await upgrade_platform(db)
        manifest = load_manifest(root)
        async with db.session() as s:
            known = {v.version for v in await service.list_versions(s, manifest.id)}
        if manifest.version not in known:
            await register_version(db, root, publish=True)
        if tenant is None:
            return None
        ref = await find_tenant(db, tenant, tenant_id)
        async with db.session() as s:
            try:
                current = await service.get_installation(s, ref.id, manifest.id)
            except PlexicaError:
                current = None

        async def apply(installer: Installer) -> Any:
            if current is None or current.status in ("uninstalled", "failed"):
                if current is not None and current.status == "failed":
                    await installer.uninstall(ref, manifest.id, purge=True)
                return await installer.install(ref, manifest.id, manifest.version)
            if current.version != manifest.version:
                return await installer.upgrade(ref, manifest.id, manifest.version)
            return current

        return await with_installer(settings, db, manifest.id, plugin_url, apply)

    return job


def _say(message: str) -> None:
    typer.secho(f"plexica dev: {message}", err=True, fg=typer.colors.CYAN)


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


@plugin_app.command("dev")
def dev(  # noqa: PLR0917 - typer maps parameters to options
    target: Annotated[
        str, typer.Argument(help="The plugin's folder, or the slug of an installed plugin.")
    ],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Install it into this local tenant.")
    ] = None,
    tenant_id: TenantIdOpt = None,
    plugin_url: PluginUrlOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Register and install, then exit (no server).")
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: a free port.")] = 0,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Developer loop: run the plugin as its own process against the running platform
    (``plexica up`` or PLEXICA_DATABASE_URL), register it, install it into --tenant, and
    restart it whenever its files change. With --once or --plugin-url (the plugin runs
    elsewhere): register and install, then exit."""
    from plexica.plugins.dev import DevError, DevRunner, child_env, find_source

    try:
        source = find_source(target)
    except DevError as exc:
        raise fail(str(exc)) from None
    if once or plugin_url:
        if tenant is None:
            raise fail("--tenant is required with --once or --plugin-url")
        show(run_job(_sync(source.root, tenant, tenant_id, plugin_url), data_dir, url), as_json)
        return

    import os

    from plexica.kit.ports import free_port
    from plexica.plugins import service

    settings = platform_settings("cli", data_dir, url)
    run_job(_sync(source.root, None, None, None), data_dir, url)

    async def login_job(_: Settings, db: Database) -> str:
        async with db.session() as s:
            login = await service.ensure_login(s, source.plugin_id)
        return login.database_url(str(settings.database_url))

    public = settings.public_base_url
    extra = {
        "PLEXICA_PLUGIN_DATABASE_URL": run_job(login_job, data_dir, url),
        "PLEXICA_PLUGIN_ISSUER_BASE_URL": os.environ.get("PLEXICA_PLUGIN_ISSUER_BASE_URL")
        or f"{settings.issuer_base_url}/realms",
        "PLEXICA_PLUGIN_CORE_URL": os.environ.get("PLEXICA_PLUGIN_CORE_URL")
        or f"{public}/api/core",
    }
    chosen = port or free_port()

    def sync() -> None:
        try:
            out = run_job(
                _sync(source.root, tenant, tenant_id, f"http://127.0.0.1:{chosen}"), data_dir, url
            )
        except typer.Exit:
            _say("registering or installing failed (see above); watching for changes")
            return
        if out is None:
            _say(f"registered; pass --tenant to install {source.plugin_id} into a tenant")
        else:
            _say(f"{source.plugin_id} {out.version} is {out.status} in tenant {tenant}")

    runner = DevRunner(
        source, chosen, child_env(os.environ, source, extra), say=_say, on_ready=sync
    )
    from plexica.cli import runtime
    from plexica.plugins import devroutes

    folder = settings.data_dir.expanduser()
    if running_db(runtime.read(folder)) != str(settings.database_url):
        runner.run()  # no `plexica up` serves this database: nothing routes to the plugin
        return
    # Beside a running `plexica up`: its edge routes the plugin's API and pages here (ADR 0134).
    route = devroutes.announce(folder, source.plugin_id, f"http://127.0.0.1:{chosen}")
    _say(f"served through the platform at {public}/api/plugins/{source.plugin_id}/")
    try:
        runner.run()
    finally:
        devroutes.withdraw(route)
