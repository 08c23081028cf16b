"""The one time-bounded cache of the platform and the plugins (ADR 0259).

``TtlCache`` keeps an answer for a while; ``get_or_load`` also makes identical concurrent
misses share one load (``SingleFlight``), and an eviction during a load wins over what the load
brings back: the answer is returned to its callers but not kept, and later callers do not join
it. The clock is injectable, for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
L = TypeVar("L", bound=Hashable)


class SingleFlight(Generic[L, V]):
    """Identical concurrent lookups share one call: the first caller's load runs, the others
    await its result, whatever the number of requests that missed at once."""

    def __init__(self) -> None:
        self._running: dict[L, asyncio.Future[V]] = {}

    async def __call__(self, key: L, load: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        # A caller that gives up (a client gone) does not cancel the others' load.
        return await asyncio.shield(running)

    def _finished(self, key: L, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone before it failed


class TtlCache(Generic[K, V]):
    """Answers kept ``ttl`` seconds (or as long as ``put`` or ``keep`` says), at most
    ``max_entries`` of them: when full, the expired go, and if none had, all go."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        # A key's version changes with its eviction, every key's with a clear: a load begun
        # before either neither is kept nor is joined.
        self._epoch = 0
        self._evictions: dict[K, int] = {}
        self._loads: SingleFlight[tuple[K, int, int], V] = SingleFlight()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            self._entries.pop(key, None)
            return None
        return hit[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep ``value`` for ``ttl`` seconds (the cache's own by default; none if ``<= 0``)."""
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0:
            return
        now = self.clock()
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (now + ttl, value)

    def evict(self, key: K) -> None:
        self._entries.pop(key, None)
        if len(self._evictions) >= self.max_entries:
            self.clear()
        self._evictions[key] = self._evictions.get(key, 0) + 1

    def clear(self) -> None:
        self._entries.clear()
        self._evictions.clear()
        self._epoch += 1

    def _version(self, key: K) -> tuple[int, int]:
        return self._epoch, self._evictions.get(key, 0)

    async def get_or_load(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        keep: Callable[[V], float] | None = None,
    ) -> V:
        """The kept answer, or the result of ``load`` shared by every concurrent miss of
        ``key``; ``keep`` says how long to keep a result (``<= 0``: not at all). A failed load
        is not kept: its callers get its exception."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        version = self._version(key)

        async def load_and_keep() -> V:
            value = await load()
            if self._version(key) == version:
                self.put(key, value, None if keep is None else keep(value))
            return value

        return await self._loads((key, *version), load_and_keep)
