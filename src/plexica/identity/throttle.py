"""Login throttling: failures counted per realm+email and per client address.

Only failures count, and a success clears the account's counter. The accounts' counters (the
lockout) live in PostgreSQL (``PostgresThrottle``), shared by every replica, with or without
Redis; the addresses' counters (a rate limit) are kept by each process beside them. With Redis
(``PLEXICA_REDIS_URL``), ``GuardedThrottle`` also counts both there and asks Redis whether to
wait, so that a sign-in costs no database read; while Redis fails it asks PostgreSQL and the
process, the accounts' failures before the outage included: the lockout holds through it (ADR
0143, ADR 0243). ``MemoryThrottle`` alone serves what is local to one process (the shell's
invitation page).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from plexica.identity import policy_repository as repo
from plexica.kit.redisguard import Breaker
from plexica_sdk.errors import PlexicaError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from plexica.kit.db import Database


@dataclass(frozen=True)
class Limits:
    per_account: int = 5
    per_address: int = 30
    window_seconds: float = 300.0


class LoginThrottle(Protocol):
    async def blocked(self, realm: str, email: str, address: str) -> float:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        ...

    async def failed(self, realm: str, email: str, address: str) -> None: ...

    async def succeeded(self, realm: str, email: str) -> None: ...


async def refuse_while_blocked(
    throttle: LoginThrottle, realm: str, email: str, address: str, what: str
) -> None:
    """429 ``too_many_attempts`` with ``Retry-After`` while the counters say wait; ``what``
    names the failures counted ("wrong passwords")."""
    wait = await throttle.blocked(realm, email, address)
    if wait > 0:
        seconds = str(int(wait) + 1)
        raise PlexicaError(
            f"Too many {what}. Try again in {seconds} seconds.",
            code="too_many_attempts", status=429, headers={"Retry-After": seconds},
        )  # fmt: skip


def _account(realm: str, email: str) -> str:
    return f"acct:{realm}:{email.lower()}"


def _address(address: str) -> str:
    return f"addr:{address}"


@dataclass
class MemoryThrottle:
    limits: Limits = field(default_factory=Limits)
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _window(self, key: str, now: float) -> deque[float]:
        window = self._failures.setdefault(key, deque())
        while window and window[0] <= now - self.limits.window_seconds:
            window.popleft()
        if not window:
            del self._failures[key]
            return deque()
        return window

    def _wait(self, key: str, limit: int, now: float) -> float:
        window = self._window(key, now)
        if len(window) < limit:
            return 0.0
        return window[-limit] + self.limits.window_seconds - now

    async def blocked(self, realm: str, email: str, address: str) -> float:
        now = time.monotonic()
        return max(
            self._wait(_account(realm, email), self.limits.per_account, now),
            self._wait(_address(address), self.limits.per_address, now),
        )

    async def failed(self, realm: str, email: str, address: str) -> None:
        for key in (_account(realm, email), _address(address)):
            self._count(key)

    def _count(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(time.monotonic())
        if len(self._failures) > 100_000:
            # Bounded memory under a spray of addresses: forget the oldest windows.
            for stale in list(self._failures)[:10_000]:
                del self._failures[stale]

    def address_wait(self, address: str) -> float:
        return self._wait(_address(address), self.limits.per_address, time.monotonic())

    def count_address(self, address: str) -> None:
        self._count(_address(address))

    async def succeeded(self, realm: str, email: str) -> None:
        self._failures.pop(_account(realm, email), None)


@dataclass
class RedisThrottle:
    """Fixed windows in Redis: INCR with an expiry set on the first failure."""

    redis: Redis
    limits: Limits = field(default_factory=Limits)
    prefix: str = "plexica:login:"

    async def blocked(self, realm: str, email: str, address: str) -> float:
        wait = 0.0
        for key, limit in (
            (_account(realm, email), self.limits.per_account),
            (_address(address), self.limits.per_address),
        ):
            count = await self.redis.get(self.prefix + key)
            if count is not None and int(count) >= limit:
                ttl = await self.redis.pttl(self.prefix + key)
                wait = max(wait, max(ttl, 1) / 1000)
        return wait

    async def failed(self, realm: str, email: str, address: str) -> None:
        window_ms = int(self.limits.window_seconds * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (_account(realm, email), _address(address)):
                pipe.incr(self.prefix + key)
                pipe.pexpire(self.prefix + key, window_ms, nx=True)
            await pipe.execute()

    async def succeeded(self, realm: str, email: str) -> None:
        await self.redis.delete(self.prefix + _account(realm, email))


@dataclass
class PostgresThrottle:
    """The accounts' fixed windows in ``platform.login_failures``, in their own transactions (a
    failure counts even when the request's work rolls back); the addresses' in this process."""

    db: Database
    limits: Limits = field(default_factory=Limits)
    addresses: MemoryThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.addresses = MemoryThrottle(self.limits)

    async def blocked(self, realm: str, email: str, address: str) -> float:
        account = _account(realm, email)
        async with self.db.session() as session:
            live = await repo.failures(session, [account])
        count, left = live.get(account, (0, 0.0))
        wait = max(left, 0.001) if count >= self.limits.per_account else 0.0
        return max(wait, self.addresses.address_wait(address))

    async def failed(self, realm: str, email: str, address: str) -> None:
        self.addresses.count_address(address)
        async with self.db.session() as session:
            await repo.count_failure(session, [_account(realm, email)], self.limits.window_seconds)

    async def succeeded(self, realm: str, email: str) -> None:
        async with self.db.session() as session:
            await repo.clear_failures(session, _account(realm, email))


@dataclass
class GuardedThrottle:
    """Redis with a 100 ms budget and a breaker, PostgreSQL behind it: every failure is
    written to both, and PostgreSQL answers while Redis fails."""

    remote: RedisThrottle
    shared: PostgresThrottle
    breaker: Breaker = field(default_factory=lambda: Breaker("login_throttle"))

    async def blocked(self, realm: str, email: str, address: str) -> float:
        return await self.breaker.call(
            lambda: self.remote.blocked(realm, email, address),
            lambda: self.shared.blocked(realm, email, address),
        )

    async def failed(self, realm: str, email: str, address: str) -> None:
        await self.shared.failed(realm, email, address)
        await self.breaker.call(lambda: self.remote.failed(realm, email, address), _nothing)

    async def succeeded(self, realm: str, email: str) -> None:
        await self.shared.succeeded(realm, email)
        await self.breaker.call(lambda: self.remote.succeeded(realm, email), _nothing)


async def _nothing() -> None:
    """PostgreSQL has it already."""
