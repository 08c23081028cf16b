"""Which tenants are active, cached per process and invalidated on every replica (ADR 0032).

With Redis, an invalidation is published on a channel every replica listens to, and entries live
30 s as a safety net; without Redis (one process, or the CLI beside ``plexica up``) entries live
one second, so a change made elsewhere is seen within a second either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from uuid import UUID

import structlog

from plexica.kit.channel import ChannelListener
from plexica.tenants.schemas import Tenant
from plexica_sdk.cache import TtlCache

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("plexica.tenants.cache")

CHANNEL = "plexica:tenants:invalidate"
ALL = "*"
PUBLISH_TIMEOUT = 0.5

Loader = Callable[[UUID], Awaitable[Tenant | None]]


class TenantCache:
    def __init__(self, loader: Loader, *, redis_url: str | None = None) -> None:
        self.loader = loader
        self.redis_url = redis_url
        self.ttl = 30.0 if redis_url else 1.0
        # None is kept too: a tenant that does not exist is asked about no more than the rest.
        # Sized above any fleet: the edge asks for a tenant on every request.
        self._kept: TtlCache[UUID, Tenant | None] = TtlCache(self.ttl, max_entries=1_000_000)
        self._redis: Redis | None = None
        self._listener: ChannelListener | None = None

    async def get(self, tenant_id: UUID) -> Tenant | None:
        return await self._kept.get_or_load(tenant_id, lambda: self.loader(tenant_id))

    def evict(self, tenant_id: UUID | None) -> None:
        if tenant_id is None:
            self._kept.clear()
        else:
            self._kept.evict(tenant_id)

    async def invalidate(self, tenant_id: UUID) -> None:
        """Forget the tenant here and, through Redis, on every other replica."""
        self.evict(tenant_id)
        if self._redis is not None:
            try:
                # Bounded: a hanging Redis must not hold up a saga or a suspension.
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await self._redis.publish(CHANNEL, str(tenant_id))
            except Exception as exc:  # noqa: BLE001 - the TTL still bounds staleness
                log.warning("tenant_invalidation_not_published", error=str(exc))

    async def start(self) -> None:
        if self.redis_url is None or self._listener is not None:
            return
        from redis.asyncio import Redis

        self._redis = Redis.from_url(self.redis_url)
        self._listener = ChannelListener(
            self._redis,
            CHANNEL,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            # What was kept may have missed its invalidation while the channel was away.
            on_lost=lambda: self.evict(None),
            retry_after=1.0,
        )
        await self._listener.start()

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _on_subscribed(self, _again: bool) -> None:
        # Messages may have been missed while we were not subscribed.
        self.evict(None)

    async def _on_message(self, raw: str) -> None:
        if raw == ALL:
            self.evict(None)
            return
        try:
            self.evict(UUID(raw))
        except ValueError:
            return
