"""``plexica plugin`` commands on a plugin's own logins: its database login and, with an
authenticating broker, its broker login and ACLs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from plexica.cli.common import DataDirOpt, JsonOpt, UrlOpt, echo_json, fail, table
from plexica.cli.plugins.common import plugin_app, run_job, show

if TYPE_CHECKING:
    from plexica.kit.db import Database
    from plexica.settings import Settings


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
    With an authenticating broker, also its broker login, for PLEXICA_KAFKA_USERNAME/PASSWORD:
    made at once with the ACLs of its manifests where the broker's administrator is given
    (PLEXICA_KAFKA_ADMIN_*), else by the grants job within its period (ADR 0218, 0253)."""
    from plexica.events.acl import broker_password, plugin_principal
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
        elif settings.kafka_login() is not None:
            out |= {
                "kafka_username": plugin_principal(plugin_id),
                "kafka_password": broker_password(login.password.get_secret_value()),
            }
        return out

    show(run_job(job, data_dir, url), as_json)


@plugin_app.command("broker-acls")
def broker_acls(
    watch: Annotated[
        bool, typer.Option(help="Go on every PLEXICA_BROKER_ACL_SECONDS until stopped.")
    ] = False,
    heartbeat: Annotated[
        Path | None, typer.Option(help="With --watch: a file touched after each good pass.")
    ] = None,
    *,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """The grants job (ADR 0253): as the broker's administrator (PLEXICA_KAFKA_ADMIN_*), make
    the platform's principal (PLEXICA_KAFKA_USERNAME/PASSWORD) and every plugin's with a login,
    and their ACLs, equal to the catalog; one row per plugin and what it may do."""
    from plexica.plugins import broker

    async def job(settings: Settings, db: Database) -> Any:
        admin = broker.broker_admin(settings)
        if admin is None:
            raise fail(
                "no broker administrator: set PLEXICA_KAFKA_BROKERS, "
                "PLEXICA_KAFKA_ADMIN_USERNAME and PLEXICA_KAFKA_ADMIN_PASSWORD"
            )
        if watch:
            await broker.keep_reconciled(db, settings, admin, heartbeat)
        done = await broker.reconcile(db, admin, settings.kafka_login())
        return [
            {
                "plugin_id": plugin_id,
                "principal": access.login.username,
                "grants": " ".join(str(g) for g in sorted(access.grants)),
            }
            for plugin_id, access in done.items()
        ]

    rows = run_job(job, data_dir, url)
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["plugin_id", "principal", "grants"], empty="no plugin has a login")
