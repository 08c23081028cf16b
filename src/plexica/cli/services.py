"""``plexica serve ...``: one service per process, configured only by environment variables."""

from __future__ import annotations

import os

import structlog

from plexica.cli.common import fail, settings_or_exit
from plexica.cli.factories import PLUGIN_PREFIX
from plexica.cli.keys import check_key_custody
from plexica.kit.ports import PortInUseError
from plexica.kit.server import serve_workers
from plexica.plugins.loader import PluginNotFoundError, find_plugin
from plexica.settings import ENV_PREFIX
from plexica_sdk.logs import configure_logging


def serve_service(kind: str, slug: str | None = None) -> None:
    service = PLUGIN_PREFIX + slug if slug else kind
    settings = settings_or_exit(service)
    configure_logging(service, settings.log_level, settings.log_format)
    if kind in ("core", "worker", "web") and settings.database_url is None:
        raise fail("PLEXICA_DATABASE_URL is required for `plexica serve` (or use `plexica up`)")
    if kind == "core" and settings.keycloak_url is None:
        check_key_custody(settings)
    if slug is not None:
        try:
            find_plugin(slug)
        except PluginNotFoundError as exc:
            raise fail(str(exc)) from None
        if os.environ.get(ENV_PREFIX + "PLUGIN_DATABASE_URL") and settings.database_url:
            # ADR 0078: the plugin and its event consumer use the plugin's own login; the
            # platform's is not needed, so the plugin's code does not get it either.
            os.environ.pop(ENV_PREFIX + "DATABASE_URL", None)
            structlog.get_logger("plexica.plugins").warning(
                "plugin_process_has_platform_credentials",
                plugin=slug,
                action="ignored, and removed from the environment of the plugin's workers",
                hint="do not give PLEXICA_DATABASE_URL to a plugin process",
            )
    # The worker processes read their settings from the environment, as this process did.
    os.environ[ENV_PREFIX + "SERVICE"] = service
    try:
        serve_workers(
            "plexica.cli.factories:create",
            settings.host,
            settings.port,
            workers=settings.workers,
            grace_seconds=settings.shutdown_grace_seconds,
            drain_seconds=settings.drain_seconds,
        )
    except PortInUseError as exc:
        raise fail(f"{exc}; set PLEXICA_PORT to another port") from None
