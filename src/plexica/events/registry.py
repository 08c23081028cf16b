"""Which plugin receives which events for which tenants.

The plugin platform owns installations; it writes here (``service.register_subscriptions``,
``service.set_plugin_active``, ``service.remove_plugin``) on install, enable, disable and
uninstall, and delivery reads it through ``SubscriptionRegistry``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import structlog

from plexica.events.repository import plugin_api, subscriptions
from plexica.kit.db import Database
from plexica_sdk.cache import SingleFlight

log = structlog.get_logger("plexica.events.registry")


class SubscriptionRegistry(Protocol):
    async def is_active(self, plugin_id: str, tenant_id: UUID) -> bool:
        """True when the plugin is installed and active for the tenant."""
        ...

    async def aclose(self) -> None:
        """Stop what it does in the background."""
        ...


@dataclass(slots=True)
class _Answer:
    at: float
    active: bool
    served: bool  # since it was asked: only answers in use are asked for again


class DbSubscriptionRegistry:
    """Reads the platform tables; answers are cached for ``ttl_seconds`` (1 s by default), so an
    install, enable or disable takes effect on every consumer within that time.

    A consumer asks in line with its events, and the answers for a plugin's tenants, filled
    together, expire together: asked one by one, 50 tenants stalled a Kafka consumer for tens of
    milliseconds each second. So the answers of a plugin that were served are asked again
    together, in one query (up to ``REFRESH_MAX`` tenants), once they are half their time old:
    in the background while they may still be served, in line only when one has expired.
    Answers that expire unserved are dropped, so what is kept follows the traffic."""

    REFRESH_MAX = 1000

    def __init__(
        self, db: Database, ttl_seconds: float = 1.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.clock = clock
        self._answers: dict[str, dict[UUID, _Answer]] = {}
        # The events of a batch for one tenant miss together: one lookup answers them all.
        self._lookups: SingleFlight[tuple[str, UUID], bool] = SingleFlight()
        self._ahead: dict[str, asyncio.Task[bool]] = {}
        self._quiet_until: dict[str, float] = {}  # after a failed refresh ahead of time

    async def is_active(self, plugin_id: str, tenant_id: UUID) -> bool:
        answer = self._answers.get(plugin_id, {}).get(tenant_id)
        if answer is not None:
            now = self.clock()
            age = now - answer.at
            if age < self.ttl:
                answer.served = True
                if age >= self.ttl / 2:
                    self._refresh_ahead(plugin_id, now)
                return answer.active
        return await self._lookups(
            (plugin_id, tenant_id), lambda: self._refresh(plugin_id, tenant_id)
        )

    def _refresh_ahead(self, plugin_id: str, now: float) -> None:
        if plugin_id in self._ahead or now < self._quiet_until.get(plugin_id, 0.0):
            return
        task = asyncio.create_task(self._refresh(plugin_id))
        self._ahead[plugin_id] = task
        task.add_done_callback(lambda _: self._ahead.pop(plugin_id, None))

    async def _refresh(self, plugin_id: str, tenant_id: UUID | None = None) -> bool:
        """Ask again for ``tenant_id`` and every served answer of the plugin that is half its
        time old; True when ``tenant_id`` is active."""
        now = self.clock()
        known = self._answers.setdefault(plugin_id, {})
        for tenant in [t for t, a in known.items() if not a.served and now - a.at >= self.ttl]:
            del known[tenant]
        due = (
            t
            for t, a in known.items()
            if a.served and t != tenant_id and now - a.at >= self.ttl / 2
        )
        asked = ([tenant_id] if tenant_id is not None else []) + list(
            itertools.islice(due, self.REFRESH_MAX - 1)
        )
        try:
            active = await self._lookup(plugin_id, asked)
        except Exception as exc:
            if tenant_id is not None:
                raise
            # Ahead of time only: an answer that expires is asked for again in line.
            self._quiet_until[plugin_id] = now + self.ttl / 2
            log.warning("subscriptions_refresh_failed", plugin=plugin_id, error=repr(exc))
            return False
        if len(known) > 100_000:  # a flood of tenants within one time to live
            known.clear()
        for tenant in asked:
            kept = known.get(tenant)
            if kept is None or kept.at <= now:  # never over a newer answer
                known[tenant] = _Answer(now, tenant in active, served=tenant == tenant_id)
        return tenant_id in active

    async def aclose(self) -> None:
        tasks = list(self._ahead.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _lookup(self, plugin_id: str, tenant_ids: list[UUID]) -> set[UUID]:
        async with self.db.session() as session:
            return await subscriptions.active_among(session, plugin_id, tenant_ids)

    async def event_types(self, plugin_id: str) -> frozenset[str]:
        async with self.db.session() as session:
            return frozenset(await subscriptions.subscribed_types(session, plugin_id))


class PluginLoginRegistry(DbSubscriptionRegistry):
    """The same answers for a process logged in as one plugin (ADR 0078): it may only ask
    about itself, through ``plugin_api.event_consumer_active``."""

    def __init__(
        self,
        db: Database,
        plugin_id: str,
        ttl_seconds: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(db, ttl_seconds, clock=clock)
        self.plugin_id = plugin_id

    async def _lookup(self, plugin_id: str, tenant_ids: list[UUID]) -> set[UUID]:
        if plugin_id != self.plugin_id:
            return set()
        async with self.db.session() as session:
            return await plugin_api.own_active_among(session, tenant_ids)
