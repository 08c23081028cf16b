"""Composition of the plugin domain in the core app."""

from __future__ import annotations

from starlette.types import ASGIApp

from plexica.kit.db import Database
from plexica.kit.state import CoreState
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


def attach(core: CoreState, settings: Settings, db: Database) -> Installer:
    """Give the core its installer; ``core.plugin_endpoints`` may already hold in-process plugin
    apps (embedded mode) and ``core.plugin_probe`` a probe of the caller's."""
    endpoints = core.plugin_endpoints
    for slug, url in plugin_urls(settings).items():
        endpoints.setdefault(slug, url)
    probe: ReadinessProbe = core.plugin_probe or HttpReadinessProbe(endpoints)
    core.plugin_installer = installer = Installer(db, probe)
    return installer
