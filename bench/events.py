"""Events benchmark on real servers (embedded PostgreSQL + Apache Kafka 4, both on loopback).

    .venv/bin/python -m bench.events [--events 20000] [--latency-events 400]

Prints: producer throughput aiokafka vs confluent-kafka (same broker, same records, acks=all,
idempotent), relay throughput outbox → Kafka, commit → plugin handler latency P50/P95/P99, and
events lost through a broker kill -9 + restart (end to end, counted at the handler).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from plexica.events import service
from plexica.events.relay import KafkaSink, Relay, ensure_topics
from plexica.events.runtime import EventRuntime
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.settings import Settings
from plexica_sdk.events import Event, EventBus, to_kafka
from tests.harness import servers
from tests.harness.servers import KafkaBroker


def _records(n: int) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]:
    tenants = [uuid.uuid4() for _ in range(50)]
    out = []
    for i in range(n):
        e = Event(
            source="/bench", type="bench.deal.won", tenant_id=tenants[i % 50],
            data={"deal_id": str(uuid.uuid4()), "amount": i, "currency": "EUR", "owner": "x" * 40},
        )  # fmt: skip
        key, value, headers = to_kafka(e)
        out.append((e.family, key, value, headers))
    return out


async def bench_aiokafka(bootstrap: str, n: int) -> float:
    from aiokafka import AIOKafkaProducer

    topic = f"bench.aio{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, {topic}, 6)
    records = _records(n)
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
        max_batch_size=256 * 1024,
    )  # fmt: skip
    await p.start()
    try:
        start = time.perf_counter()
        futs = [await p.send(topic, v, key=k, headers=h) for _, k, v, h in records]
        await asyncio.gather(*futs)
        return n / (time.perf_counter() - start)
    finally:
        await p.stop()


def bench_confluent(bootstrap: str, n: int) -> float:
    from confluent_kafka import Producer

    topic = f"bench.ck{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topics(bootstrap, {topic}, 6))
    records = _records(n)
    p = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
        "linger.ms": 2, "batch.size": 256 * 1024,
    })  # fmt: skip
    acked = 0

    def done(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1

    start = time.perf_counter()
    for _, k, v, h in records:
        while True:
            try:
                p.produce(topic, v, key=k, headers=list(h), on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(60)
    elapsed = time.perf_counter() - start
    assert acked == n, acked
    return n / elapsed


async def fill_outbox(db: Database, n: int, family: str) -> None:
    tenants = [uuid.uuid4() for _ in range(50)]
    for chunk in range(0, n, 1000):
        async with db.session() as s:
            for i in range(chunk, min(n, chunk + 1000)):
                await service.publish(
                    s, f"{family}.won", {"i": i, "amount": i}, tenant_id=tenants[i % 50]
                )


async def pending(db: Database) -> int:
    async with db.session() as s:
        r = await s.execute(text("SELECT count(*) FROM platform.outbox WHERE published_at IS NULL"))
        return int(r.scalar_one())


async def bench_relay(db: Database, bootstrap: str, n: int, relays: int) -> float:
    family = f"bench.r{uuid.uuid4().hex[:6]}"
    await fill_outbox(db, n, family)
    await ensure_topics(bootstrap, {family}, 6)
    sinks = [KafkaSink(bootstrap, client_id=f"bench-{i}") for i in range(relays)]
    workers = [Relay(db, s, batch_size=1000) for s in sinks]

    async def run(r: Relay) -> None:
        while (await r.step())[0]:
            pass

    start = time.perf_counter()
    await asyncio.gather(*(run(r) for r in workers))
    elapsed = time.perf_counter() - start
    for s in sinks:
        await s.close()
    left = await pending(db)
    assert left == 0, left
    return n / elapsed


async def bench_latency(db: Database, bootstrap: str, n: int) -> list[float]:
    tenant = uuid.uuid4()
    plugin = "b" + uuid.uuid4().hex[:8]
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
    async with EventRuntime(db, {plugin: bus}, kafka_brokers=bootstrap) as rt:
        await asyncio.wait_for(rt.ready(), 60)
        for i in range(20):  # warm up connections and the topic
            async with db.session() as s:
                e = await service.publish(s, typ, {"warm": i}, tenant_id=tenant)
            committed[e.id] = time.perf_counter()
        while len(latencies) < 20:
            await asyncio.sleep(0.05)
        latencies.clear()
        for i in range(n):
            async with db.session() as s:
                e = await service.publish(s, typ, {"i": i}, tenant_id=tenant)
                eid = e.id
            committed[eid] = time.perf_counter()
            await asyncio.sleep(0.01)
        deadline = time.perf_counter() + 30
        while len(latencies) < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    return sorted(x * 1000 for x in latencies)


async def bench_restart(db: Database, workdir: Path, n: int) -> tuple[int, int, int, float]:
    broker = KafkaBroker(workdir)
    broker.start()
    tenant = uuid.uuid4()
    plugin = "r" + uuid.uuid4().hex[:8]
    typ = f"{plugin}.order.placed"
    bus = EventBus(plugin)
    seen: set[uuid.UUID] = set()
    deliveries = 0

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        nonlocal deliveries
        deliveries += 1
        seen.add(event.id)

    async with db.session() as s:
        await service.register_subscriptions(s, plugin, [typ])
        await service.set_plugin_active(s, plugin, tenant, True)
    committed: list[uuid.UUID] = []
    outage = 0.0
    try:
        async with EventRuntime(db, {plugin: bus}, kafka_brokers=broker.bootstrap) as rt:
            await asyncio.wait_for(rt.ready(), 60)
            for i in range(n):
                async with db.session() as s:
                    e = await service.publish(s, typ, {"i": i}, tenant_id=tenant)
                committed.append(e.id)
                if i == n // 3:
                    t0 = time.perf_counter()
                    await asyncio.to_thread(broker.kill)
                    await asyncio.sleep(2)
                    await asyncio.to_thread(broker.start)
                    outage = time.perf_counter() - t0
                await asyncio.sleep(0.003)
            deadline = time.perf_counter() + 120
            while not set(committed) <= seen and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
    finally:
        broker.stop()
    lost = len(set(committed) - seen)
    return len(committed), lost, deliveries - len(seen), outage


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--latency-events", type=int, default=400)
    ap.add_argument("--restart-events", type=int, default=1500)
    ap.add_argument(
        "--only",
        choices=["producers", "relay", "latency", "restart"],
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="plexica-bench-events-"))
    os.environ[servers.SESSION_ENV] = str(base)
    try:
        pg_url = servers.ensure("postgres")["url"]
        bootstrap = servers.ensure("kafka")["bootstrap"]
        from tests.conftest import create_database

        url = await create_database(pg_url, "bench_events")
        db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=10)
        await upgrade_platform(db)
        print(f"broker: Apache Kafka {servers.KAFKA_VERSION} (KRaft, 1 node) at {bootstrap}")

        n = args.events
        parts = set(args.only or ["producers", "relay", "latency", "restart"])
        if "producers" in parts:
            await bench_producers(bootstrap, n)
        if "relay" in parts:
            for relays in (1, 2):
                rate = await bench_relay(db, bootstrap, n, relays)
                print(f"relay throughput outbox -> Kafka, {relays} relay(s): {rate:8.0f} events/s")
        if "latency" in parts:
            await bench_latency_report(db, bootstrap, args.latency_events)
        if "restart" in parts:
            committed, lost, dup, outage = await bench_restart(
                db, _mkdir(base / "restart-broker"), args.restart_events
            )
            print(
                f"broker kill -9 + restart ({outage:.1f} s outage): {committed} committed, "
                f"{lost} lost, {dup} redelivered duplicates"
            )
        await db.dispose()
    finally:
        servers.stop_all(base)


async def bench_producers(bootstrap: str, n: int) -> None:
    aio = await bench_aiokafka(bootstrap, n)
    ck = await asyncio.to_thread(bench_confluent, bootstrap, n)
    print(f"producer throughput ({n} records, acks=all, idempotent):")
    print(f"  aiokafka         {aio:10.0f} records/s")
    print(f"  confluent-kafka  {ck:10.0f} records/s")


async def bench_latency_report(db: Database, bootstrap: str, n: int) -> None:
    lat = await bench_latency(db, bootstrap, n)
    q = statistics.quantiles(lat, n=100)
    print(
        f"commit -> handler latency ({len(lat)} events, Kafka): "
        f"P50 {q[49]:.1f} ms  P95 {q[94]:.1f} ms  P99 {q[98]:.1f} ms  max {lat[-1]:.1f} ms"
    )


if __name__ == "__main__":
    threading.stack_size(0)
    asyncio.run(main())
