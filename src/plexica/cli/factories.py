"""App factories that ``plexica serve`` hands to the ASGI server's worker processes.

Each worker process builds its app from the environment (the parent has already validated it),
so nothing but ``PLEXICA_*`` variables crosses the process boundary.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from plexica.settings import ENV_PREFIX, load_settings
from plexica_sdk.logs import configure_logging

PLUGIN_PREFIX = "plugin-"


def create() -> FastAPI:
    settings = load_settings()
    configure_logging(settings.service, settings.log_level, settings.log_format)
    service = settings.service
    if service == "core":
        from plexica.app import create_app

        return create_app(settings)
    if service == "worker":
        from plexica.worker import create_worker_app

        return create_worker_app(settings)
    if service == "web":
        from plexica.web.app import create_web_app

        return create_web_app(settings)
    if service.startswith(PLUGIN_PREFIX):
        from plexica.events.runtime import consume_in_process
        from plexica.plugins.loader import load_plugin_app

        app = load_plugin_app(service.removeprefix(PLUGIN_PREFIX))
        own_login = os.environ.get(ENV_PREFIX + "PLUGIN_DATABASE_URL") or None
        consume_in_process(app, settings, own_login)
        return app
    raise ValueError(f"unknown service {service!r}")
