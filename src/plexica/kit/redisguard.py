"""Redis on the request path: short timeouts and a breaker, so an outage costs nothing per request.

Every use of Redis on the request path has an in-process fallback (a local rate limiter, a local
login throttle). A call gets ``REDIS_TIMEOUT`` (100 ms) in all, connecting included; after a
failure the breaker skips Redis for ``cooldown`` seconds and then lets one call through to see
whether it is back. So a Redis that refuses, or hangs (SIGSTOP, a network partition), costs one
request 100 ms every couple of seconds, not every request half a second (ADR 0143). Fallbacks
are counted in ``plexica_redis_fallback_total`` and the breaker's transitions are logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import structlog
from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    # Imported where Redis is configured: without it (``plexica up``) start-up does without.
    from redis.asyncio import Redis

log = structlog.get_logger("plexica.redis")
T = TypeVar("T")

REDIS_TIMEOUT = 0.1
FALLBACKS = Counter(
    "plexica_redis_fallback_total",
    "Calls answered by the in-process fallback because Redis failed or its breaker was open.",
    ["component"],
)
BREAKER_OPEN = Gauge(
    "plexica_redis_breaker_open",
    "1 while the component skips Redis after a failure, else 0.",
    ["component"],
)


def redis_client(url: str, *, timeout: float = REDIS_TIMEOUT, max_connections: int = 50) -> Redis:
    """A client whose every wait (pool checkout, connect, read) is bounded by ``timeout``."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return Redis(connection_pool=pool)


def redis_failures() -> tuple[type[Exception], ...]:
    """What a Redis call raises when Redis is down, hangs or refuses."""
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class Breaker:
    def __init__(
        self,
        component: str,
        *,
        cooldown: float = 2.0,
        timeout: float = REDIS_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.component = component
        self.cooldown = cooldown
        self.timeout = timeout
        self.clock = clock
        self._open_until: float | None = None
        self._failures = redis_failures()
        BREAKER_OPEN.labels(component).set(0)

    @property
    def open(self) -> bool:
        return self._open_until is not None and self.clock() < self._open_until

    def _failed(self, exc: BaseException) -> None:
        if self._open_until is None:
            log.warning(
                "redis_unavailable",
                component=self.component,
                error=f"{type(exc).__name__}: {exc}"[:200],
                action="in-process fallback",
            )
        self._open_until = self.clock() + self.cooldown
        BREAKER_OPEN.labels(self.component).set(1)

    def _succeeded(self) -> None:
        if self._open_until is not None:
            log.info("redis_recovered", component=self.component)
            self._open_until = None
            BREAKER_OPEN.labels(self.component).set(0)

    async def call(
        self, remote: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        """``remote()`` within the timeout, else (or while the breaker is open) ``local()``."""
        now = self.clock()
        if self._open_until is None or now >= self._open_until:
            if self._open_until is not None:
                # Half-open: this call probes; the others keep the fallback meanwhile.
                self._open_until = now + self.cooldown
            try:
                async with asyncio.timeout(self.timeout):
                    result = await remote()
            except self._failures as exc:
                self._failed(exc)
            else:
                self._succeeded()
                return result
        FALLBACKS.labels(self.component).inc()
        return await local()
