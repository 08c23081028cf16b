"""The web shell service (server-rendered)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from plexica import __version__
from plexica.settings import Settings
from plexica_sdk.service import create_service_app

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Plexica</title></head>
<body><main><h1>Plexica {version}</h1>
<p>The platform is running. API: <a href="/api/core/docs">/api/core/docs</a></p>
</main></body></html>
"""


def create_web_app(settings: Settings) -> FastAPI:
    app = create_service_app(
        "web", title="Plexica web", version=__version__, openapi_url=None, docs_url=None
    )
    app.state.settings = settings

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        return _PAGE.format(version=__version__)

    return app
