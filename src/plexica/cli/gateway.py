"""``plexica gateway config traefik|kong``: the data plane's configuration from the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
import yaml

from plexica.cli.common import database_settings

gateway_app = typer.Typer(no_args_is_help=True, help="API gateway configuration.")
config_app = typer.Typer(no_args_is_help=True, help="Write a data plane's configuration.")
gateway_app.add_typer(config_app, name="config")

CoreUrl = Annotated[str, typer.Option(help="Where the gateway reaches the core.")]
WebUrl = Annotated[str | None, typer.Option(help="Where the gateway reaches the web shell.")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")]


def _deployed_plugins() -> dict[str, str]:
    from plexica.gateway.config import deployed
    from plexica.kit.db import Database
    from plexica.plugins import service
    from plexica.plugins.wiring import plugin_urls

    settings = database_settings("cli")

    async def run() -> list[str]:
        db = Database(settings.sqlalchemy_url, pool_size=1)
        try:
            async with db.session() as session:
                return await service.catalog_ids(session)
        finally:
            await db.dispose()

    return deployed(asyncio.run(run()), plugin_urls(settings))


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    # Written whole then renamed: Traefik's file watcher never reads half a file.
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(output)


@config_app.command("traefik")
def traefik(
    core_url: CoreUrl = "http://core:3000", web_url: WebUrl = None, output: Output = None
) -> None:
    """Traefik file-provider dynamic configuration (reloaded by Traefik when the file changes)."""
    from plexica.gateway.config import traefik_config

    config = traefik_config(core_url, _deployed_plugins(), web_url)
    _write(yaml.safe_dump(config, sort_keys=False), output)


@config_app.command("kong")
def kong(
    core_url: CoreUrl = "http://core:3000", web_url: WebUrl = None, output: Output = None
) -> None:
    """Kong DB-less declarative configuration (``KONG_DECLARATIVE_CONFIG``)."""
    from plexica.gateway.config import kong_config

    config = kong_config(core_url, _deployed_plugins(), web_url)
    _write(yaml.safe_dump(config, sort_keys=False), output)
