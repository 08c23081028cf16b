"""Rate limits by GCRA (generic cell rate algorithm): atomic in Redis, or in process.

A limit of N requests per period allows a burst of N and then one request every period/N.
Redis keeps one timestamp per key (the theoretical arrival time), updated by one Lua script, so
every replica shares the same counters. When Redis fails, ``fail_open`` decides: count in an
in-process limiter of this replica (default) or refuse with 503 ``rate_limiter_unavailable``;
either way the failure is logged and counted (ADR 0143).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog
from prometheus_client import Counter

from plexica.kit.redisguard import Breaker
from plexica_sdk.errors import PlexicaError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("plexica.ratelimit")
LIMITER_ERRORS = Counter(
    "plexica_rate_limiter_errors_total",
    "Rate-limit checks Redis did not answer, by what answered instead (local limiter, 503).",
    ["mode"],
)
REJECTIONS = Counter(
    "plexica_rate_limit_rejections_total",
    "Requests refused with 429 by tenant (top N by traffic, else 'other') and kind (core, plugin).",
    ["tenant", "kind"],
)


class LimiterUnavailableError(PlexicaError):
    """Fail-closed mode and Redis is unreachable: not the caller's fault, so not a 429."""

    status, code = 503, "rate_limiter_unavailable"


@dataclass(frozen=True)
class Limit:
    requests: int
    period_seconds: float = 60.0

    @property
    def interval(self) -> float:
        return self.period_seconds / self.requests


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float  # until the bucket is full again
    retry_after_seconds: float  # 0 when allowed

    def headers(self) -> dict[str, str]:
        """IETF RateLimit header fields, plus Retry-After when refused."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_seconds)),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_seconds)))
        return out


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> Decision: ...


def _gcra(now: float, tat: float, limit: Limit) -> tuple[Decision, float]:
    interval = limit.interval
    burst = limit.period_seconds
    tat = max(tat, now)
    new_tat = tat + interval
    allow_at = new_tat - burst
    if now < allow_at:
        remaining = 0
        return Decision(False, limit.requests, remaining, tat - now, allow_at - now), tat
    # The epsilon keeps 60/100 s steps from flooring 99 to 98.
    remaining = int((burst - (new_tat - now)) / interval + 1e-9)
    return Decision(True, limit.requests, max(0, remaining), new_tat - now, 0.0), new_tat


class MemoryRateLimiter:
    """The embedded mode's limiter: same algorithm, one process."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._max_keys = max_keys

    async def hit(self, key: str, limit: Limit) -> Decision:
        async with self._lock:
            now = time.monotonic()
            if len(self._tat) >= self._max_keys:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
            decision, tat = _gcra(now, self._tat.get(key, now), limit)
            self._tat[key] = tat
            return decision


# KEYS[1] = key; ARGV = interval, burst (seconds). Time comes from Redis so replicas agree.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst
if now < allow_at then
  return {0, tostring(tat - now), tostring(allow_at - now), 0}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(new_tat - now), '0', math.floor((burst - (new_tat - now)) / interval + 1e-9)}
"""


class RedisRateLimiter:
    """Shared counters in Redis. While Redis fails (100 ms budget, then a breaker skips it for
    a while: ``kit.redisguard``) ``fail_open`` decides: limits are kept by an in-process limiter
    per replica (default; not open, just per replica), or requests are refused with 503
    ``rate_limiter_unavailable``. Either way the failure is counted and logged."""

    def __init__(
        self,
        redis: Redis,
        *,
        fail_open: bool = True,
        prefix: str = "plexica:rl:",
        breaker: Breaker | None = None,
    ) -> None:
        self.redis = redis
        self.fail_open = fail_open
        self.prefix = prefix
        self.breaker = breaker or Breaker("rate_limiter")
        self.local = MemoryRateLimiter()
        self._script = redis.register_script(_LUA)

    async def hit(self, key: str, limit: Limit) -> Decision:
        async def remote() -> Decision:
            allowed, reset, retry, remaining = await self._script(
                keys=[self.prefix + key], args=[limit.interval, limit.period_seconds]
            )
            return Decision(
                bool(allowed), limit.requests, max(0, int(remaining)), float(reset), float(retry)
            )

        async def local() -> Decision:
            mode = "local" if self.fail_open else "closed"
            LIMITER_ERRORS.labels(mode).inc()
            if self.fail_open:
                return await self.local.hit(key, limit)
            raise LimiterUnavailableError(
                "rate limits cannot be checked right now", headers={"Retry-After": "1"}
            )

        return await self.breaker.call(remote, local)
