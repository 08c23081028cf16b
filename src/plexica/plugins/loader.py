"""Find installed plugin distributions through the ``plexica.plugins`` entry-point group.

Each entry point names a factory ``create_app(config: PluginConfig | None = None) -> FastAPI``;
without a config the plugin reads its environment (its own process), with one it is mounted
in-process by the embedded gateway.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

import structlog
from fastapi import FastAPI

from plexica_sdk.app import PluginConfig

GROUP = "plexica.plugins"
log = structlog.get_logger("plexica.plugins")


class PluginNotFoundError(LookupError):
    pass


def find_plugin(slug: str) -> EntryPoint:
    for ep in entry_points(group=GROUP):
        if ep.name == slug:
            return ep
    known = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP))) or "none installed"
    raise PluginNotFoundError(f"no plugin named {slug!r} (available: {known})")


def _build(ep: EntryPoint, config: PluginConfig | None) -> FastAPI:
    factory = cast(Callable[..., FastAPI], ep.load())
    if config is not None and "config" in inspect.signature(factory).parameters:
        return factory(config=config)
    return factory()


def load_plugin_app(slug: str, config: PluginConfig | None = None) -> FastAPI:
    return _build(find_plugin(slug), config)


def load_plugin_apps(config: Callable[[str], PluginConfig]) -> dict[str, FastAPI]:
    """Every installed plugin distribution, for mounting in-process. A plugin that fails to
    load is logged and left out rather than stopping the platform."""
    apps: dict[str, FastAPI] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            apps[ep.name] = _build(ep, config(ep.name))
        except Exception as exc:  # one broken plugin must not stop the others
            log.exception("plugin_load_failed", plugin=ep.name, error=type(exc).__name__)
    return apps


def describe(apps: dict[str, FastAPI]) -> dict[str, Any]:
    return {slug: app.version for slug, app in apps.items()}
