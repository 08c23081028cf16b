"""GCRA limits against real Redis and in process."""

import asyncio
import uuid

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from plexica.gateway.ratelimit import (
    Limit,
    LimiterUnavailableError,
    MemoryRateLimiter,
    RedisRateLimiter,
)
from plexica.kit.ports import free_port
from plexica.kit.redisguard import Breaker


def pooled(url: str) -> Redis:
    # A gateway replica waits for a pooled connection rather than failing open under a burst;
    # on a saturated CI machine a burst's wait can pass the pool's default 20 s.
    return Redis(
        connection_pool=BlockingConnectionPool.from_url(url, max_connections=20, timeout=300)
    )


@pytest.fixture
async def redis(redis_url: str) -> Redis:
    return pooled(redis_url)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_allows_the_burst_then_refuses_with_retry_after(redis: Redis, kind: str) -> None:
    limiter = MemoryRateLimiter() if kind == "memory" else RedisRateLimiter(redis)
    key, limit = uuid.uuid4().hex, Limit(5, 60)
    decisions = [await limiter.hit(key, limit) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.headers()["Retry-After"] == "12"  # one request every 60/5 s
    assert refused.headers()["RateLimit-Limit"] == "5"
    assert refused.headers()["RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_refills_at_the_rate(redis: Redis, kind: str) -> None:
    """Waiting the Retry-After it was given lets a refused client in again, however slow the
    machine (a slower burst only refills more)."""
    limiter = MemoryRateLimiter() if kind == "memory" else RedisRateLimiter(redis)
    key, limit = uuid.uuid4().hex, Limit(3, 1.5)  # one every 500 ms
    for _ in range(100):
        refused = await limiter.hit(key, limit)
        if not refused.allowed:
            break
    assert not refused.allowed
    assert 0 < refused.retry_after_seconds <= limit.interval
    await asyncio.sleep(refused.retry_after_seconds)
    assert (await limiter.hit(key, limit)).allowed


async def test_redis_counters_are_shared_and_atomic(redis: Redis, redis_url: str) -> None:
    """Two replicas (two clients) hitting concurrently never let more than the limit through."""
    # A burst of 300 on 20 connections waits for the pool longer than the request-path budget.
    # Not failing open: a Redis that could not be reached fails the test as such, rather than
    # as a count that each replica's local limiter made too high.
    other = RedisRateLimiter(
        pooled(redis_url), fail_open=False, breaker=Breaker("test", timeout=300)
    )
    mine = RedisRateLimiter(redis, fail_open=False, breaker=Breaker("test", timeout=300))
    # One slot refills every 36 s: a slow machine cannot make the burst outlast an interval.
    key, limit = uuid.uuid4().hex, Limit(100, 3600)
    results = await asyncio.gather(
        *(limiter.hit(key, limit) for _ in range(150) for limiter in (mine, other))
    )
    assert sum(d.allowed for d in results) == 100


async def test_keys_are_independent(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis)
    limit = Limit(1, 60)
    assert (await limiter.hit("tenant-a:user-1:crm", limit)).allowed
    assert not (await limiter.hit("tenant-a:user-1:crm", limit)).allowed
    assert (await limiter.hit("tenant-a:user-2:crm", limit)).allowed


async def test_redis_down_follows_the_configured_policy() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    decision = await RedisRateLimiter(dead, fail_open=True).hit("k", Limit(5, 60))
    assert decision.allowed
    with pytest.raises(LimiterUnavailableError) as refused:
        await RedisRateLimiter(dead, fail_open=False).hit("k", Limit(5, 60))
    assert (refused.value.status, refused.value.code) == (503, "rate_limiter_unavailable")
