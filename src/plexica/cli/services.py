"""``plexica serve ...``: one service per process, configured only by environment variables."""

from __future__ import annotations

from fastapi import FastAPI

from plexica.cli.common import fail, settings_or_exit
from plexica.kit.server import PortInUseError, serve
from plexica.plugins.loader import PluginNotFoundError, load_plugin_app
from plexica_sdk.observability import configure_logging


def serve_service(kind: str, slug: str | None = None) -> None:
    service = f"plugin-{slug}" if slug else kind
    settings = settings_or_exit(service)
    configure_logging(service, settings.log_level, settings.log_format)
    if kind in ("core", "worker") and settings.database_url is None:
        raise fail("PLEXICA_DATABASE_URL is required for `plexica serve` (or use `plexica up`)")
    app: FastAPI
    if kind == "core":
        from plexica.app import create_app

        app = create_app(settings)
    elif kind == "worker":
        from plexica.worker import create_worker_app

        app = create_worker_app(settings)
    elif kind == "web":
        from plexica.web.app import create_web_app

        app = create_web_app(settings)
    else:
        assert slug is not None
        try:
            app = load_plugin_app(slug)
        except PluginNotFoundError as exc:
            raise fail(str(exc)) from None
    try:
        serve(app, settings.host, settings.port, settings.shutdown_grace_seconds)
    except PortInUseError as exc:
        raise fail(f"{exc}; set PLEXICA_PORT to another port") from None
