"""The Billing plugin's app: the entry point ``plexica.plugins: billing``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI

from plexica_billing.api import api_router
from plexica_billing.events import event_bus
from plexica_billing.invoicing import scheduled_invoice_run
from plexica_billing.pages import ui_router
from plexica_sdk.app import PluginConfig, PluginRuntime, create_plugin_app
from plexica_sdk.jobs import PeriodicJob
from plexica_sdk.manifest import MANIFEST_FILE, Manifest, find_plugin_root, load_manifest

HERE = Path(__file__).resolve().parent
# Hourly: a period ends at midnight UTC, so its invoice is out within the hour.
JOBS = [PeriodicJob("invoice-run", scheduled_invoice_run, every=3600.0)]


def plugin_root() -> Path:
    return find_plugin_root(HERE)


@cache
def manifest() -> Manifest:
    return load_manifest(plugin_root() / MANIFEST_FILE)


def create_app(config: PluginConfig | None = None) -> FastAPI:
    app = create_plugin_app(
        manifest(),
        routers=[api_router(), ui_router()],
        config=config,
        templates=HERE / "templates",
        jobs=JOBS,
    )
    runtime: PluginRuntime = app.state.plugin
    app.state.event_bus = event_bus(lambda: runtime.db)
    return app
