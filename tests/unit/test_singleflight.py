"""plexica_sdk.cache.SingleFlight: identical concurrent lookups share one call (issue 20)."""

from __future__ import annotations

import asyncio

import pytest

from plexica_sdk.cache import SingleFlight


async def test_concurrent_callers_share_one_load_and_the_next_miss_loads_again() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate, calls = asyncio.Event(), []

    async def load() -> int:
        calls.append(1)
        await gate.wait()
        return len(calls)

    waiting = [asyncio.create_task(flight("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1] * 20
    assert len(calls) == 1
    assert await flight("k", load) == 2  # done: a later miss loads anew
    assert await flight("other", load) == 3


async def test_a_failure_reaches_every_caller_and_a_caller_gone_cancels_nothing() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise LookupError("the database is away")

    first = asyncio.create_task(flight("k", failing))
    second = asyncio.create_task(flight("k", failing))
    await asyncio.sleep(0)
    first.cancel()  # its client went away
    gate.set()
    with pytest.raises(LookupError):
        await second
    with pytest.raises(asyncio.CancelledError):
        await first
