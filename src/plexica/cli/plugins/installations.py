"""``plexica plugin`` commands on a tenant's installations: install, enable, disable, uninstall,
upgrade (one tenant or all of them) and settings."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plexica.cli.common import DataDirOpt, JsonOpt, UrlOpt, echo_json, fail, table
from plexica.cli.plugins.common import (
    PluginUrlOpt,
    TenantIdOpt,
    TenantOpt,
    answer,
    find_tenant,
    installations_path,
    lifecycle_installer,
    plugin_app,
    run_job,
    show,
    with_installer,
)
from plexica.cli.progress import bar

if TYPE_CHECKING:
    from plexica.cli.api import Api
    from plexica.kit.db import Database
    from plexica.kit.provisioning import TenantRef
    from plexica.plugins.service import Installer
    from plexica.settings import Settings


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

    def through_api(api: Api) -> Any:
        body = {"plugin_id": plugin_id, "version": version, "settings": values}
        return api.call("POST", installations_path(api, tenant, tenant_id), body)

    async def job(settings: Settings, db: Database) -> Any:
        ref = await find_tenant(db, tenant, tenant_id)
        return await with_installer(
            settings,
            db,
            plugin_id,
            plugin_url,
            lambda i: i.install(ref, plugin_id, version, values),
        )

    show(answer(None if plugin_url else through_api, job, data_dir, url, as_json), as_json)


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
        def through_api(api: Api) -> Any:
            where = f"{installations_path(api, tenant, tenant_id)}/{plugin_id}/{name}"
            return api.call("POST", where)

        async def job(settings: Settings, db: Database) -> Any:
            ref = await find_tenant(db, tenant, tenant_id)
            return await call(lifecycle_installer(db), ref, plugin_id)

        show(answer(through_api, job, data_dir, url, as_json), as_json)

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

    def through_api(api: Api) -> Any:
        where = f"{installations_path(api, tenant, tenant_id)}/{plugin_id}"
        return api.call("DELETE", where, params={"purge": "true" if purge else "false"})

    async def job(_: Settings, db: Database) -> Any:
        ref = await find_tenant(db, tenant, tenant_id)
        return await lifecycle_installer(db).uninstall(ref, plugin_id, purge=purge)

    out = answer(through_api, job, data_dir, url, as_json)
    show(out if out is not None else {"plugin_id": plugin_id, "purged": True}, as_json)


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

    def through_api(api: Api) -> Any:
        where = f"{installations_path(api, tenant, tenant_id)}/{plugin_id}/upgrade"
        return api.call("POST", where, {"version": version})

    async def job(settings: Settings, db: Database) -> Any:
        ref = await find_tenant(db, tenant, tenant_id)
        return await with_installer(
            settings, db, plugin_id, plugin_url, lambda i: i.upgrade(ref, plugin_id, version)
        )

    show(answer(None if plugin_url else through_api, job, data_dir, url, as_json), as_json)


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
        return await with_installer(
            settings,
            db,
            plugin_id,
            plugin_url,
            lambda i: i.upgrade_fleet(
                plugin_id, version, concurrency=concurrency, progress=advance
            ),
        )

    with bar(f"upgrading {plugin_id}: tenants", quiet=as_json) as advance:
        results = run_job(job, data_dir, url)
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
        ref = await find_tenant(db, tenant, tenant_id)
        if values is None:
            async with db.session() as s:
                return (await service.get_installation(s, ref.id, plugin_id)).settings
        out = await lifecycle_installer(db).update_settings(ref, plugin_id, values)
        return out.settings

    echo_json(run_job(job, data_dir, url))  # settings are JSON in and out
