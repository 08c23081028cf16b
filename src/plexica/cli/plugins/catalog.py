"""``plexica plugin`` commands on the catalog: its manifest schema, the versions registered,
and their status (published, deprecated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plexica.cli.common import DataDirOpt, JsonOpt, UrlOpt
from plexica.cli.plugins.common import (
    TenantIdOpt,
    answer,
    find_tenant,
    installations_path,
    plugin_app,
    register_version,
    show,
)

if TYPE_CHECKING:
    from plexica.cli.api import Api
    from plexica.kit.db import Database
    from plexica.settings import Settings


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

    def through_api(api: Api) -> Any:
        path = "/v1/plugins" if tenant is None else installations_path(api, tenant, tenant_id)
        return api.call("GET", path)

    async def job(_: Settings, db: Database) -> Any:
        from plexica.plugins import service

        if tenant is None:
            async with db.session() as s:
                return await service.list_versions(s)
        ref = await find_tenant(db, tenant, tenant_id)
        async with db.session() as s:
            return await service.list_installations(s, ref.id)

    show(answer(through_api, job, data_dir, url, as_json), as_json)


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

    def through_api(api: Api) -> Any:
        from plexica_sdk.manifest import load_manifest, load_migrations

        root = path if path.is_dir() else path.parent
        manifest = load_manifest(path)
        migrations = [{"name": n, "sql": q} for n, q in load_migrations(manifest, root)]
        body = {"manifest": manifest.model_dump(mode="json"), "migrations": migrations}
        out = api.call("POST", "/v1/plugins", body)
        if publish:
            where = f"/v1/plugins/{out['plugin_id']}/versions/{out['version']}/publish"
            out = api.call("POST", where)
        return out

    async def job(_: Settings, db: Database) -> Any:
        return await register_version(db, path, publish)

    show(answer(through_api, job, data_dir, url, as_json), as_json)


def _status_command(name: str, status: str, doc: str) -> None:
    def command(
        plugin_id: str,
        version: str,
        *,
        as_json: JsonOpt = False,
        data_dir: DataDirOpt = None,
        url: UrlOpt = None,
    ) -> None:
        def through_api(api: Api) -> Any:
            return api.call("POST", f"/v1/plugins/{plugin_id}/versions/{version}/{name}")

        async def job(_: Settings, db: Database) -> Any:
            from plexica.plugins import service
            from plexica.plugins.schemas import VersionStatus

            async with db.session() as s:
                return await service.set_status(s, plugin_id, version, VersionStatus(status))

        show(answer(through_api, job, data_dir, url, as_json), as_json)

    command.__doc__ = doc
    plugin_app.command(name)(command)


_status_command("publish", "published", "Make a registered version installable.")
_status_command("deprecate", "deprecated", "Stop new installs of a version.")
