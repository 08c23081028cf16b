"""Find installed plugin distributions through the ``plexica.plugins`` entry-point group.

Each entry point names a zero-argument factory that returns the plugin's ASGI (FastAPI) app.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from fastapi import FastAPI

GROUP = "plexica.plugins"


class PluginNotFoundError(LookupError):
    pass


def find_plugin(slug: str) -> EntryPoint:
    for ep in entry_points(group=GROUP):
        if ep.name == slug:
            return ep
    known = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP))) or "none installed"
    raise PluginNotFoundError(f"no plugin named {slug!r} (available: {known})")


def load_plugin_app(slug: str) -> FastAPI:
    factory = cast(Callable[[], FastAPI], find_plugin(slug).load())
    return factory()
