"""plexica: run the platform embedded or as separate services, and operate it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from plexica import __version__
from plexica.cli.backup import backup_app, restore_app
from plexica.cli.common import fail, settings_or_exit
from plexica.cli.flags import flag_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
serve_app = typer.Typer(no_args_is_help=True, help="Run one service of the distributed mode.")
app.add_typer(serve_app, name="serve")
app.add_typer(flag_app, name="flag")
app.add_typer(backup_app, name="backup")
app.add_typer(restore_app, name="restore")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Port of the single entry point.")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the embedded data lives (default: per-user).")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Delete all data and start from nothing.")] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Run the whole platform in one process (embedded PostgreSQL unless configured)."""
    from plexica.cli.up import run_up

    run_up(port=port, data_dir=data_dir, reset=reset, host=host)


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
def migrate() -> None:
    """Upgrade the platform schema at PLEXICA_DATABASE_URL to the newest revision."""
    from plexica.kit.db import Database
    from plexica.kit.migrate import upgrade_platform

    settings = settings_or_exit("migrate")
    if settings.database_url is None:
        raise fail("PLEXICA_DATABASE_URL is not set (plexica up migrates its own database)")

    async def run() -> None:
        db = Database(settings.sqlalchemy_url, pool_size=2)
        try:
            await upgrade_platform(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    typer.echo("platform schema is up to date")
