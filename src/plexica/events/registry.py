"""Which plugin receives which events for which tenants.

The plugin platform owns installations; it writes here (``service.register_subscriptions``,
``service.set_plugin_active``, ``service.remove_plugin``) on install, enable, disable and
uninstall, and delivery reads it through ``SubscriptionRegistry``.
"""

from __future__ import annotations

import time
from typing import Protocol
from uuid import UUID

from plexica.events.repository import plugin_api, subscriptions
from plexica.kit.db import Database
from plexica.kit.singleflight import SingleFlight


class SubscriptionRegistry(Protocol):
    async def is_active(self, plugin_id: str, tenant_id: UUID) -> bool:
        """True when the plugin is installed and active for the tenant."""
        ...


class DbSubscriptionRegistry:
    """Reads the platform tables; answers are cached for ``ttl_seconds`` (1 s by default), so an
    install, enable or disable takes effect on every consumer within that time."""

    def __init__(self, db: Database, ttl_seconds: float = 1.0) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._active: dict[tuple[str, UUID], tuple[float, bool]] = {}
        # The events of a batch for one tenant miss together: one lookup answers them all.
        self._lookups: SingleFlight[tuple[str, UUID], bool] = SingleFlight()

    async def is_active(self, plugin_id: str, tenant_id: UUID) -> bool:
        key = (plugin_id, tenant_id)
        cached = self._active.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        return await self._lookups(key, lambda: self._remember(key))

    async def _remember(self, key: tuple[str, UUID]) -> bool:
        now = time.monotonic()
        active = await self._lookup(*key)
        if len(self._active) > 100_000:
            self._active.clear()
        self._active[key] = (now, active)
        return active

    async def _lookup(self, plugin_id: str, tenant_id: UUID) -> bool:
        async with self.db.session() as session:
            return await subscriptions.is_active(session, plugin_id, tenant_id)

    async def event_types(self, plugin_id: str) -> frozenset[str]:
        async with self.db.session() as session:
            return frozenset(await subscriptions.subscribed_types(session, plugin_id))


class PluginLoginRegistry(DbSubscriptionRegistry):
    """The same answers for a process logged in as one plugin (ADR 0078): it may only ask
    about itself, through ``plugin_api.event_consumer_active``."""

    def __init__(self, db: Database, plugin_id: str, ttl_seconds: float = 1.0) -> None:
        super().__init__(db, ttl_seconds)
        self.plugin_id = plugin_id

    async def _lookup(self, plugin_id: str, tenant_id: UUID) -> bool:
        if plugin_id != self.plugin_id:
            return False
        async with self.db.session() as session:
            return await plugin_api.own_is_active(session, tenant_id)
