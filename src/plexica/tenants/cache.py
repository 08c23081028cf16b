"""Which tenants are active, cached per process and invalidated on every replica (ADR 0032).

With Redis, an invalidation is published on a channel every replica listens to, and entries live
30 s as a safety net; without Redis (one process, or the CLI beside ``plexica up``) entries live
one second, so a change made elsewhere is seen within a second either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from uuid import UUID

import structlog

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
        self._kept: TtlCache[UUID, Tenant | None] = TtlCache(self.ttl)
        self._redis: Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

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
        self._listener = asyncio.create_task(self._listen(), name="tenant-cache-invalidation")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _listen(self) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    # Messages may have been missed while we were not subscribed.
                    self.evict(None)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        self._on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; TTL bounds staleness meanwhile
                log.warning("tenant_invalidation_listener_lost", error=str(exc))
                self.evict(None)
                await asyncio.sleep(1)

    def _on_message(self, data: object) -> None:
        raw = data.decode() if isinstance(data, bytes) else str(data)
        if raw == ALL:
            self.evict(None)
            return
        try:
            self.evict(UUID(raw))
        except ValueError:
            return
