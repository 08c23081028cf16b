"""plexica_sdk.cache.TtlCache: the one time-bounded cache (ADR 0259), on an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from plexica_sdk.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_its_time_and_no_longer() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(2.0, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2, ttl=10.0)
    cache.put("c", 3, ttl=0)  # not kept at all
    clock.now += 1.999
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, None)
    clock.now += 0.001
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.evict("b")
    assert cache.get("b") is None


def test_a_full_cache_drops_the_expired_first_then_everything() -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(1.0, max_entries=3, clock=clock)
    cache.put(1, 1)
    cache.put(2, 2, ttl=5.0)
    cache.put(3, 3, ttl=5.0)
    clock.now += 2
    cache.put(4, 4)  # 1 has expired: it makes the room
    assert [cache.get(k) for k in (1, 2, 3, 4)] == [None, 2, 3, 4]
    cache.put(5, 5)  # none expired: all go, the newest stays
    assert len(cache) == 1
    assert cache.get(5) == 5
    cache.put(5, 6)  # replacing a kept key makes no room
    assert cache.get(5) == 6


async def test_concurrent_misses_share_one_load_and_keep_says_for_how_long() -> None:
    clock = Clock()
    cache: TtlCache[str, bool] = TtlCache(1.0, clock=clock)
    gate, calls = asyncio.Event(), []

    async def load() -> bool:
        calls.append(1)
        await gate.wait()
        return len(calls) == 1

    waiting = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [True] * 20
    assert len(calls) == 1
    assert await cache.get_or_load("k", load) is True  # kept
    clock.now += 1

    # A "no" is not kept: asked again every time.
    def keep_yes(value: bool) -> float:
        return 1.0 if value else 0

    assert await cache.get_or_load("k", load, keep_yes) is False
    assert await cache.get_or_load("k", load, keep_yes) is False
    assert len(calls) == 3


async def test_an_eviction_during_a_load_wins_and_is_not_joined() -> None:
    cache: TtlCache[str, str | None] = TtlCache(60.0, clock=Clock())
    gate, answers = asyncio.Event(), iter(["before", "after"])

    async def load() -> str | None:
        answer = next(answers)
        if answer == "before":
            await gate.wait()
        return answer

    slow = asyncio.create_task(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    cache.evict("k")  # the record changed while the old answer was being read
    assert await cache.get_or_load("k", load) == "after"
    gate.set()
    assert await slow == "before"  # its caller gets it, the cache does not keep it
    assert await cache.get_or_load("k", load) == "after"


async def test_an_eviction_spoils_only_its_own_keys_load_and_a_clear_spoils_all() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0, clock=Clock())
    gate, calls = asyncio.Event(), []

    async def load() -> int:
        calls.append(1)
        await gate.wait()
        return len(calls)

    a, b = (asyncio.create_task(cache.get_or_load(k, load)) for k in "ab")
    await asyncio.sleep(0)
    cache.evict("other")
    joined = asyncio.create_task(cache.get_or_load("a", load))  # joins a's load in flight
    await asyncio.sleep(0)
    cache.clear()
    gate.set()
    assert await a == await joined
    await b
    assert len(calls) == 2
    assert len(cache) == 0  # the clear came while both were loading
    gate.clear()
    c = asyncio.create_task(cache.get_or_load("c", load))
    await asyncio.sleep(0)
    cache.evict("other")  # another key's eviction: c's load is still kept
    gate.set()
    assert await c == 3
    assert await cache.get_or_load("c", load) == 3
    assert len(calls) == 3


async def test_a_kept_none_is_an_answer_and_a_failed_load_is_not_kept() -> None:
    cache: TtlCache[str, int | None] = TtlCache(60.0, clock=Clock())
    calls: list[int] = []

    async def missing() -> int | None:
        calls.append(1)
        return None

    assert await cache.get_or_load("gone", missing) is None
    assert await cache.get_or_load("gone", missing) is None
    assert len(calls) == 1

    async def failing() -> int | None:
        raise LookupError("the database is away")

    with pytest.raises(LookupError):
        await cache.get_or_load("k", failing)
    assert cache.get("k") is None
    assert len(cache) == 1
