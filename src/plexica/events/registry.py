"""Which plugin receives which events for which tenants.

The plugin platform owns installations; it writes here (``service.register_subscriptions``,
``service.set_plugin_active``, ``service.remove_plugin``) on install, enable, disable and
uninstall, and delivery reads it through ``SubscriptionRegistry``.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from plexica.events import repository
from plexica.kit.db import Database


class SubscriptionRegistry(Protocol):
    async def is_active(self, plugin_id: str, tenant_id: UUID) -> bool:
        """True when the plugin is installed and active for the tenant."""
        ...

    async def event_types(self, plugin_id: str) -> frozenset[str]:
        """The event types the plugin consumes."""
        ...


class DbSubscriptionRegistry:
    """Reads the platform tables on every call: a disable takes effect on the next event."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def is_active(self, plugin_id: str, tenant_id: UUID) -> bool:
        async with self.db.session() as session:
            return await repository.is_active(session, plugin_id, tenant_id)

    async def event_types(self, plugin_id: str) -> frozenset[str]:
        async with self.db.session() as session:
            return frozenset(await repository.subscribed_types(session, plugin_id))
