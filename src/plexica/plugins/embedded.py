"""The plugins of the embedded mode: every installed distribution, mounted in-process."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI

from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.plugins import service
from plexica.plugins.loader import load_plugin_apps
from plexica.settings import Settings
from plexica_sdk.app import PluginConfig
from plexica_sdk.context import Principal
from plexica_sdk.errors import UnavailableError
from plexica_sdk.revocation import Refusal, Stamp


class CoreVerifier:
    """The core's verifier, looked up per call: identity sets it during the core's start."""

    def __init__(self, core: FastAPI) -> None:
        self.core = core

    async def verify(self, token: str) -> Principal:
        verifier = state_of(self.core).verifier
        if verifier is None:
            raise UnavailableError("authentication is not configured")
        principal: Principal = await verifier.verify(token)
        return principal


class CoreRevocations:
    """The core's revocation list (ADR 0115), looked up per call like ``CoreVerifier``."""

    def __init__(self, core: FastAPI) -> None:
        self.core = core

    def check(self, stamp: Stamp) -> Refusal | None:
        revocations = state_of(self.core).revocations
        return revocations.check(stamp) if revocations is not None else None


def login_resolver(settings: Settings) -> Callable[[str], Coroutine[Any, Any, str]]:
    """A plugin's own login URL (ADR 0076), made on first use: an in-process plugin connects
    with it exactly like a plugin in its own process, never with the platform's (ADR 0112)."""
    platform_url = str(settings.database_url)

    async def login_url(plugin_id: str) -> str:
        db = Database(settings.sqlalchemy_url, pool_size=1)
        try:
            async with db.session() as s:
                login = await service.ensure_login(s, plugin_id)
        finally:
            await db.dispose()
        return login.database_url(platform_url)

    return login_url


def mount_plugins(core: FastAPI, settings: Settings) -> dict[str, FastAPI]:
    """Load the plugin apps and let the core's installer probe them in-process. This process
    hosts them, so it runs their periodic jobs too; each has a small pool on its own login."""
    login = login_resolver(settings) if settings.database_url else None
    apps = load_plugin_apps(
        lambda _slug: PluginConfig(
            database_login=login,
            verifier=CoreVerifier(core),
            revocations=CoreRevocations(core),
            run_jobs=True,
            pool_size=2,
        )
    )
    state_of(core).plugin_endpoints = dict(apps)
    return apps
