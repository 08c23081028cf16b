"""Composition of the plugin domain in the core app."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from plexica.kit.db import Database
from plexica.plugins.service import HttpReadinessProbe, Installer, ReadinessProbe
from plexica.settings import Settings


def plugin_urls(settings: Settings) -> dict[str, str | ASGIApp]:
    """``PLEXICA_PLUGIN_URLS=crm=http://plugin-crm:3000,billing=...`` (distributed mode)."""
    out: dict[str, str | ASGIApp] = {}
    for item in (settings.plugin_urls or "").split(","):
        slug, _, url = item.strip().partition("=")
        if slug and url:
            out[slug] = url
    return out


def attach(app: FastAPI, settings: Settings, db: Database) -> None:
    """Give the app its installer; ``app.state.plugin_endpoints`` may already hold in-process
    plugin apps (embedded mode) and ``app.state.plugin_probe`` a probe of the caller's."""
    endpoints = getattr(app.state, "plugin_endpoints", None)
    if endpoints is None:
        endpoints = app.state.plugin_endpoints = {}
    for slug, url in plugin_urls(settings).items():
        endpoints.setdefault(slug, url)
    probe: ReadinessProbe = getattr(app.state, "plugin_probe", None) or HttpReadinessProbe(
        endpoints
    )
    app.state.plugin_installer = Installer(db, probe)
