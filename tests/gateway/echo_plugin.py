"""A plugin service run as its own process for the live-edge tests:

    ECHO_PLUGIN_ID=<id> python -m uvicorn --factory tests.gateway.echo_plugin:create --port P

It logs JSON access lines (with the trace id it received) to stderr, as every service does.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from plexica_sdk.app import PluginConfig, create_plugin_app
from plexica_sdk.logs import configure_logging
from plexica_sdk.manifest import parse_manifest


def create() -> FastAPI:
    plugin_id = os.environ["ECHO_PLUGIN_ID"]
    configure_logging("plugin-" + plugin_id, "INFO", "json")
    manifest = parse_manifest(
        {
            "id": plugin_id,
            "name": plugin_id.title(),
            "version": "1.0.0",
            "publisher": "Tests",
            "core": ">=0.1.0 <1.0.0",
        }
    )
    app = create_plugin_app(manifest, config=PluginConfig())

    @app.get("/v1/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"path": request.url.path, "headers": dict(request.headers)}

    return app
