"""The CRM plugin's app: the entry point ``plexica.plugins: crm``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI

from plexica_crm.api import api_router
from plexica_crm.pages import ui_router
from plexica_sdk.app import PluginConfig, create_plugin_app
from plexica_sdk.manifest import MANIFEST_FILE, Manifest, find_plugin_root, load_manifest

HERE = Path(__file__).resolve().parent


def plugin_root() -> Path:
    return find_plugin_root(HERE)


@cache
def manifest() -> Manifest:
    return load_manifest(plugin_root() / MANIFEST_FILE)


def create_app(config: PluginConfig | None = None) -> FastAPI:
    return create_plugin_app(
        manifest(),
        routers=[api_router(), ui_router()],
        config=config,
        templates=HERE / "templates",
    )
