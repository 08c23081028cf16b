"""Builds the core's ``Gateway`` from settings: Redis limiter when Redis is configured."""

from __future__ import annotations

from contextlib import AsyncExitStack
from uuid import UUID

from plexica.gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from plexica.gateway.schemas import LimitPolicy
from plexica.gateway.service import Gateway, PluginActivity
from plexica.kit.db import Database
from plexica.kit.redisguard import Breaker, redis_client
from plexica.kit.state import CoreState
from plexica.plugins import service as plugins
from plexica.settings import Settings
from plexica.tenants.cache import TenantCache
from plexica_sdk.auth import CachingVerifier


async def start_gateway(
    core: CoreState, settings: Settings, db: Database, tenants: TenantCache, stack: AsyncExitStack
) -> Gateway:
    async def active(tenant_id: UUID, slug: str) -> bool:
        async with db.session() as session:
            return await plugins.is_active(session, tenant_id, slug)

    limiter: RateLimiter
    if settings.redis_url is not None:
        budget = settings.redis_timeout_ms / 1000
        redis = redis_client(str(settings.redis_url), timeout=budget)
        stack.push_async_callback(redis.aclose)
        limiter = RedisRateLimiter(
            redis,
            fail_open=settings.gateway_rate_limit_fail_open,
            breaker=Breaker("rate_limiter", timeout=budget),
        )
    else:
        limiter = MemoryRateLimiter()
    # A remembered token is checked against the revocations on every hit (ADR 0115).
    verifier = core.verifier
    if verifier is not None:
        verifier = CachingVerifier(verifier, revocations=core.revocations, keep_services=False)
    gateway = Gateway(
        verifier,
        tenants,
        PluginActivity(active, ttl=settings.gateway_plugin_cache_seconds),
        limiter,
        LimitPolicy.parse(settings.gateway_rate_limit, settings.gateway_rate_limits),
    )
    core.gateway = gateway
    return gateway
