"""Which tenants are active, cached per process and invalidated on every replica (ADR 0032).

With Redis, an invalidation is published on a channel every replica listens to, and entries live
30 s as a safety net; without Redis (one process, or the CLI beside ``plexica up``) entries live
one second, so a change made elsewhere is seen within a second either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from uuid import UUID

import structlog

from plexica.kit.singleflight import SingleFlight
from plexica.tenants.schemas import Tenant

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
        self._entries: dict[UUID, tuple[float, Tenant | None]] = {}
        self._generation: dict[UUID, int] = {}
        self._epoch = 0
        self._redis: Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._loads: SingleFlight[tuple[UUID, int, int], Tenant | None] = SingleFlight()

    async def get(self, tenant_id: UUID) -> Tenant | None:
        hit = self._entries.get(tenant_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        generation, epoch = self._generation.get(tenant_id, 0), self._epoch
        # Concurrent misses share one load; one begun before an invalidation is not joined.
        return await self._loads(
            (tenant_id, generation, epoch), lambda: self._load(tenant_id, generation, epoch)
        )

    async def _load(self, tenant_id: UUID, generation: int, epoch: int) -> Tenant | None:
        tenant = await self.loader(tenant_id)
        # An invalidation that arrived while we were loading wins over what we loaded.
        if self._generation.get(tenant_id, 0) == generation and self._epoch == epoch:
            self._entries[tenant_id] = (time.monotonic() + self.ttl, tenant)
        return tenant

    def evict(self, tenant_id: UUID | None) -> None:
        if tenant_id is None:
            self._entries.clear()
            self._epoch += 1
            return
        self._entries.pop(tenant_id, None)
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1

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
