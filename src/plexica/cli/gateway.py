"""``plexica gateway config traefik|kong``: the data plane's configuration from the registry."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import typer
import yaml

from plexica.cli.common import database_settings, fail

gateway_app = typer.Typer(no_args_is_help=True, help="API gateway configuration.")
config_app = typer.Typer(no_args_is_help=True, help="Write a data plane's configuration.")
gateway_app.add_typer(config_app, name="config")

CoreUrl = Annotated[str, typer.Option(help="Where the gateway reaches the core.")]
WebUrl = Annotated[str | None, typer.Option(help="Where the gateway reaches the web shell.")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")]


def _routes() -> dict[str, str]:
    from plexica.gateway.config import deployed
    from plexica.kit.db import Database
    from plexica.plugins import service
    from plexica.plugins.wiring import plugin_urls

    settings = database_settings("cli")

    async def run() -> list[str]:
        db = Database(settings.sqlalchemy_url, pool_size=1)
        try:
            async with db.session() as session:
                return await service.routed_ids(session)
        finally:
            await db.dispose()

    return deployed(asyncio.run(run()), plugin_urls(settings))


def _write(text: str, output: Path | None) -> None:
    from plexica.gateway.sync import write_atomically

    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomically(output, text)


def _watch(render: Callable[[Mapping[str, str]], str], output: Path, interval: float) -> None:
    """Rewrite ``output`` whenever the routed plugins change, until SIGTERM or SIGINT."""
    from plexica.gateway.sync import ConfigSync
    from plexica.kit.db import Database
    from plexica.plugins.wiring import plugin_urls
    from plexica_sdk.observability import configure_logging

    settings = database_settings("gateway-config")
    configure_logging("gateway-config", settings.log_level, settings.log_format)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        db = Database(settings.sqlalchemy_url, pool_size=1)
        try:
            await ConfigSync(db, plugin_urls(settings), render, output, interval).run(stop)
        finally:
            await db.dispose()

    asyncio.run(run())


Watch = Annotated[
    bool,
    typer.Option(
        "--watch",
        help="Keep running: rewrite the file (atomically) when a plugin is installed for the "
        "first time on the platform or removed from its last tenant.",
    ),
]
Interval = Annotated[
    float, typer.Option(min=0.2, help="Seconds between registry checks with --watch.")
]


@config_app.command("traefik")
def traefik(
    core_url: CoreUrl = "http://core:3000",
    web_url: WebUrl = None,
    output: Output = None,
    watch: Watch = False,
    interval: Interval = 1.0,
) -> None:
    """Traefik file-provider dynamic configuration (reloaded by Traefik when the file changes)."""
    from plexica.gateway.config import traefik_config

    def render(plugins: Mapping[str, str]) -> str:
        return yaml.safe_dump(traefik_config(core_url, plugins, web_url), sort_keys=False)

    if watch:
        if output is None:
            raise fail("--watch writes a file: give it with --output")
        _watch(render, output, interval)
        return
    _write(render(_routes()), output)


@config_app.command("kong")
def kong(
    core_url: CoreUrl = "http://core:3000", web_url: WebUrl = None, output: Output = None
) -> None:
    """Kong DB-less declarative configuration (``KONG_DECLARATIVE_CONFIG``)."""
    from plexica.gateway.config import kong_config

    config = kong_config(core_url, _routes(), web_url)
    _write(yaml.safe_dump(config, sort_keys=False), output)
