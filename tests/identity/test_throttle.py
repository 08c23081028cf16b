"""Both throttles (in-process and Redis, on a real Redis server) count the same way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from plexica.identity.throttle import Limits, LoginThrottle, MemoryThrottle, RedisThrottle

LIMITS = Limits(per_account=3, per_address=5, window_seconds=60)


@pytest.fixture(params=["memory", "redis"])
async def throttle(request: pytest.FixtureRequest) -> AsyncIterator[LoginThrottle]:
    if request.param == "memory":
        yield MemoryThrottle(LIMITS)
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisThrottle(redis, LIMITS, prefix=f"test:{uuid.uuid4().hex}:")
    await redis.aclose()


async def test_account_limit_and_reset_on_success(throttle: LoginThrottle) -> None:
    for _ in range(3):
        assert await throttle.blocked("r", "a@x.example", "10.0.0.1") == 0
        await throttle.failed("r", "a@x.example", "10.0.0.1")
    wait = await throttle.blocked("r", "A@x.example", "10.0.0.2")  # case and address do not matter
    assert 0 < wait <= 60
    assert await throttle.blocked("r", "b@x.example", "10.0.0.2") == 0  # other accounts are fine
    assert await throttle.blocked("other-realm", "a@x.example", "10.0.0.2") == 0
    await throttle.succeeded("r", "a@x.example")
    assert await throttle.blocked("r", "a@x.example", "10.0.0.2") == 0


async def test_address_limit_across_accounts(throttle: LoginThrottle) -> None:
    for i in range(5):
        await throttle.failed("r", f"user{i}@x.example", "10.9.9.9")
    assert await throttle.blocked("r", "fresh@x.example", "10.9.9.9") > 0
    assert await throttle.blocked("r", "fresh@x.example", "10.9.9.8") == 0


async def test_window_expires() -> None:
    throttle = MemoryThrottle(Limits(per_account=1, per_address=10, window_seconds=0.05))
    await throttle.failed("r", "a@x.example", "1.1.1.1")
    assert await throttle.blocked("r", "a@x.example", "1.1.1.1") > 0
    await asyncio.sleep(0.06)
    assert await throttle.blocked("r", "a@x.example", "1.1.1.1") == 0
