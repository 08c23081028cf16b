"""plexica: run the platform embedded or as separate services, and operate it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plexica import __version__
from plexica.cli.backup import backup_app, restore_app
from plexica.cli.common import DataDirOpt, UrlOpt
from plexica.cli.events import app as events_app
from plexica.cli.flags import flag_app
from plexica.cli.gateway import gateway_app
from plexica.cli.identity import token as identity_token
from plexica.cli.identity import user_app
from plexica.cli.keycloak import keycloak_app
from plexica.cli.keys import keys_app
from plexica.cli.mail import mail_app
from plexica.cli.plugins import (  # noqa: F401 - each adds its commands, in this order in --help
    catalog,
    installations,
    logins,
    workbench,
)
from plexica.cli.plugins.common import plugin_app
from plexica.cli.service_clients import service_client_app
from plexica.cli.tenants import tenant_app

EPILOG = (
    "Commands find the platform by themselves: the `plexica up` running on --data-dir /"
    " PLEXICA_DATA_DIR (default: the per-user folder), or a deployment at --url / PLEXICA_URL"
    " with an operator token in PLEXICA_TOKEN. tenant, plugin, flag, events, service-client and"
    " user reset-password commands go through the core's API (the last two with --tenant need"
    " that tenant's admin token); the operator-DB commands (migrate, backup, restore, keys,"
    " plugin settings/credentials/upgrade-all) need PLEXICA_DATABASE_URL away from `up`. Lists and"
    " shows take --json. Exit codes: 0 done; 1 the platform refused or the work failed;"
    " 2 bad input, no platform, an unreachable URL or a refused token."
)
# Plain help and usage errors: rich costs `--help` ~0.1 s of CPU and boxes errors in 5 lines.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=__doc__,
    epilog=EPILOG,
    rich_markup_mode=None,
)
serve_app = typer.Typer(no_args_is_help=True, help="Run one service of the distributed mode.")
app.add_typer(serve_app, name="serve")
app.add_typer(user_app, name="user")
app.command()(identity_token)
app.add_typer(plugin_app, name="plugin")
app.add_typer(events_app, name="events")
app.add_typer(flag_app, name="flag")
app.add_typer(backup_app, name="backup")
app.add_typer(restore_app, name="restore")
app.add_typer(service_client_app, name="service-client")
app.add_typer(keys_app, name="keys")
app.add_typer(keycloak_app, name="keycloak")
app.add_typer(mail_app, name="mail")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def up(
    port: Annotated[
        int, typer.Option(envvar="PLEXICA_PORT", help="Port of the single entry point.")
    ] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="PLEXICA_DATA_DIR", help="Where the embedded data lives (default: per-user)."
        ),
    ] = None,
    reset: Annotated[bool, typer.Option(help="Delete all data and start from nothing.")] = False,
    host: Annotated[
        str, typer.Option(envvar="PLEXICA_HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    *,
    demo: Annotated[
        bool,
        typer.Option(
            help="Also make a tenant `demo` with CRM and Billing data; print its sign-in."
        ),
    ] = False,
) -> None:
    """Run the whole platform in one process (embedded PostgreSQL unless configured)."""
    from plexica.cli.up import run_up

    run_up(port=port, data_dir=data_dir, reset=reset, host=host, demo=demo)


@serve_app.command("core")
def serve_core() -> None:
    """The core API (tenants, identity, plugins, gateway decision)."""
    from plexica.cli.services import serve_service

    serve_service("core")


@serve_app.command("worker")
def serve_worker() -> None:
    """The worker: outbox relay, event delivery, migrations, provisioning jobs."""
    from plexica.cli.services import serve_service

    serve_service("worker")


@serve_app.command("web")
def serve_web() -> None:
    """The web shell."""
    from plexica.cli.services import serve_service

    serve_service("web")


@serve_app.command("plugin")
def serve_plugin(slug: Annotated[str, typer.Argument(help="The plugin's id, e.g. crm.")]) -> None:
    """One plugin as its own service."""
    from plexica.cli.services import serve_service

    serve_service("plugin", slug)


@app.command()
def migrate(
    wave: Annotated[
        int | None, typer.Option(min=1, help="Migrate tenants in waves of N; halt on a failure.")
    ] = None,
    canary: Annotated[
        str | None, typer.Option(help="Comma-separated slugs migrated first, alone.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Schemas at once.")] = 4,
    data_dir: DataDirOpt = None,
    url: UrlOpt = None,
) -> None:
    """Upgrade the platform schema, then every tenant schema (parallel, resumable)."""
    from plexica.cli.fleet import run_migrate

    run_migrate(wave=wave, canary=canary, concurrency=concurrency, data_dir=data_dir, url=url)


app.add_typer(tenant_app, name="tenant")
app.add_typer(gateway_app, name="gateway")
