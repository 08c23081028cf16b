"""Delivery state through the plugin's own login (plugin_api functions, ADR 0078) against the
platform's login (direct SQL), on real servers (embedded PostgreSQL, Apache Kafka 4).

    .venv/bin/python -m bench.plugin_login_delivery [--calls 2000] [--latency-events 300]

Prints per-call P50/P95 of each bookkeeping operation on both paths, queue drain throughput,
and commit → handler latency via Kafka with each consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from plexica.events import service
from plexica.events.delivery import DeliveryStore, PlatformStore, PluginLoginStore, Setback
from plexica.events.registry import DbSubscriptionRegistry, PluginLoginRegistry
from plexica.events.runtime import EventRuntime
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.plugins import service as plugins_service
from plexica.settings import Settings
from plexica_sdk.db import asyncpg_url
from plexica_sdk.events import Event, EventBus
from tests.harness import servers


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _row(name: str, platform: list[float], plugin: list[float]) -> None:
    print(
        f"{name:<34} platform P50 {statistics.median(platform):6.2f} P95 {_pct(platform, 0.95):6.2f}"
        f" | plugin login P50 {statistics.median(plugin):6.2f} P95 {_pct(plugin, 0.95):6.2f} ms"
    )


def _event(plugin: str, tenant: uuid.UUID) -> dict[str, object]:
    e = Event(source="/bench", type=f"{plugin}.deal.won", tenant_id=tenant, data={"x": "y" * 40})
    return e.model_dump(mode="json")


async def _drain(store: DeliveryStore, plugin: str) -> tuple[float, list[float]]:
    claimed, claim_ms = 0, []
    t0 = time.perf_counter()
    while True:
        c0 = time.perf_counter()
        rows = await store.claim([plugin], 200, 60)
        if not rows:
            break
        claim_ms.append((time.perf_counter() - c0) * 1000)
        for row in rows:
            await store.delivered([row.seq])
        claimed += len(rows)
    return claimed / (time.perf_counter() - t0), claim_ms


async def bench_operations(
    db: Database, own: Database, plugin: str, tenant: uuid.UUID, calls: int
) -> None:
    """Each operation alternates between the two paths call by call, so that the load of a
    shared machine weighs on both alike."""
    platform: DeliveryStore = PlatformStore(db)
    mine: DeliveryStore = PluginLoginStore(own, plugin)
    regs = (DbSubscriptionRegistry(db, ttl_seconds=0), PluginLoginRegistry(own, plugin, 0))
    ops: dict[str, tuple[int, Callable[[int], Callable[[], Awaitable[object]]]]] = {
        "is_active (uncached)": (calls, lambda k: lambda: regs[k].is_active(plugin, tenant)),
        "retry (queue an event)": (
            calls,
            lambda k: (
                lambda: (platform, mine)[k].retry(
                    Setback(plugin, _event(plugin, tenant), 1, "boom"), 0.0
                )
            ),
        ),
        "dead letter": (
            calls // 4,
            lambda k: (
                lambda: (platform, mine)[k].dead_letter(
                    Setback(plugin, _event(plugin, tenant), 5, "boom")
                )
            ),
        ),
    }
    for name, (n, make) in ops.items():
        times: tuple[list[float], list[float]] = ([], [])
        calls_of = (make(0), make(1))
        for _ in range(n):
            for k in (0, 1):
                t0 = time.perf_counter()
                await calls_of[k]()
                times[k].append((time.perf_counter() - t0) * 1000)
        _row(name, *times)
        if name.startswith("retry"):
            # Half the queued rows each (same plugin): drain alternately in two rounds.
            rates: tuple[list[float], list[float]] = ([], [])
            claims: tuple[list[float], list[float]] = ([], [])
            for _ in range(2):
                for k, store in enumerate((platform, mine)):
                    rate, claim_ms = await _drain(store, plugin)
                    rates[k].append(rate)
                    claims[k].extend(claim_ms)
                    for _ in range(calls // 2):
                        await store.retry(Setback(plugin, _event(plugin, tenant), 1, "b"), 0.0)
            await _drain(platform, plugin)
            _row("claim (batch of 200)", *claims)
            print(
                f"{'queue drain (claim + delivered)':<34} platform"
                f" {statistics.median(rates[0]):6.0f} rows/s"
                f" | plugin login {statistics.median(rates[1]):6.0f} rows/s"
            )


async def bench_latency(
    db: Database, own: Database, bootstrap: str, n: int, *, plugin_login: bool
) -> list[float]:
    tenant = uuid.uuid4()
    plugin = "l" + uuid.uuid4().hex[:8]
    typ = f"{plugin}.deal.won"
    bus = EventBus(plugin)
    committed: dict[uuid.UUID, float] = {}
    latencies: list[float] = []

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        latencies.append(time.perf_counter() - committed[event.id])

    async with db.session() as s:
        await service.register_subscriptions(s, plugin, [typ])
        await service.set_plugin_active(s, plugin, tenant, True)
        login = await plugins_service.ensure_login(s, plugin)
    consumer_db = own
    if plugin_login:
        consumer_db = Database(asyncpg_url(login.database_url(_url(db))), pool_size=2)
        consumer = EventRuntime.for_plugin_login(consumer_db, bus, kafka_brokers=bootstrap)
    else:
        consumer = EventRuntime(db, {plugin: bus}, kafka_brokers=bootstrap, run_relay=False)
    try:
        async with consumer, EventRuntime(db, {}, kafka_brokers=bootstrap):
            await asyncio.wait_for(consumer.ready(), 60)
            for i in range(20):
                async with db.session() as s:
                    e = await service.publish(s, typ, {"warm": i}, tenant_id=tenant)
                committed[e.id] = time.perf_counter()
            while len(latencies) < 20:
                await asyncio.sleep(0.05)
            latencies.clear()
            for i in range(n):
                async with db.session() as s:
                    e = await service.publish(s, typ, {"i": i}, tenant_id=tenant)
                committed[e.id] = time.perf_counter()
                await asyncio.sleep(0.01)
            deadline = time.perf_counter() + 30
            while len(latencies) < n and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
    finally:
        if plugin_login:
            await consumer_db.dispose()
    return sorted(x * 1000 for x in latencies)


def _url(db: Database) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--latency-events", type=int, default=300)
    ap.add_argument("--no-kafka", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="plexica-bench-pluginlogin-"))
    os.environ[servers.SESSION_ENV] = str(base)
    try:
        from tests.conftest import create_database

        url = await create_database(servers.ensure("postgres")["url"], "bench_plugin_login")
        db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=5)
        await upgrade_platform(db)
        plugin, tenant = "b" + uuid.uuid4().hex[:8], uuid.uuid4()
        async with db.session() as s:
            await service.register_subscriptions(s, plugin, [f"{plugin}.deal.won"])
            await service.set_plugin_active(s, plugin, tenant, True)
            login = await plugins_service.ensure_login(s, plugin)
        own = Database(asyncpg_url(login.database_url(url)), pool_size=2)
        await bench_operations(db, own, plugin, tenant, args.calls)
        if not args.no_kafka:
            bootstrap = servers.ensure("kafka")["bootstrap"]
            for plugin_login in (False, True):
                lat = await bench_latency(
                    db, own, bootstrap, args.latency_events, plugin_login=plugin_login
                )
                label = "plugin login" if plugin_login else "platform login"
                print(
                    f"commit -> handler via Kafka, {label:<14}: {len(lat)} events,"
                    f" P50 {statistics.median(lat):6.1f} P95 {_pct(lat, 0.95):6.1f}"
                    f" P99 {_pct(lat, 0.99):6.1f} ms"
                )
        await own.dispose()
        await db.dispose()
    finally:
        servers.stop_all(base)


if __name__ == "__main__":
    asyncio.run(main())
