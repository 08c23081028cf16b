"""Events benchmark on real servers (embedded PostgreSQL + Apache Kafka 4, both on loopback).

    .venv/bin/python -m bench.events [--events 20000] [--rate 1000] [--seconds 10]
        [--idle-seconds 60] [--only delivery --only idle ...]

Prints, for the embedded mode (outbox → queue in PostgreSQL) and the Kafka mode (outbox →
Kafka → consumer group), commit → plugin handler: the maximum throughput (a backlog of
``--events`` drained by relay + delivery running together) and the latency P50/P95/P99 under an
open-loop load of ``--rate`` events/s (each event its own transaction, published on schedule
by a lean asyncpg client in a process of its own, whatever the delivery does); then the CPU an idle process spends over
``--idle-seconds`` (an event runtime per mode in this process, and each process of a
``plexica up``). Also: producer throughput aiokafka vs confluent-kafka, relay throughput
outbox → Kafka, and events lost through a broker kill -9 + restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from sqlalchemy import text

from bench._util import wait_http
from plexica.events import service
from plexica.events.relay import KafkaSink, Relay, ensure_topics
from plexica.events.runtime import EventRuntime
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.ports import free_port
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


TENANTS = 50


async def delivery_plugin(
    db: Database,
) -> tuple[EventBus, str, list[uuid.UUID], dict[uuid.UUID, float]]:
    """A plugin subscribed for ``TENANTS`` tenants whose handler notes when each event came."""
    plugin = "b" + uuid.uuid4().hex[:8]
    typ = f"{plugin}.deal.won"
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    bus = EventBus(plugin)
    received: dict[uuid.UUID, float] = {}

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        received[event.id] = time.monotonic()

    async with db.session() as s:
        await service.register_subscriptions(s, plugin, [typ])
        for tenant in tenants:
            await service.set_plugin_active(s, plugin, tenant, True)
    return bus, typ, tenants, received


async def _wait_for(received: dict[uuid.UUID, float], ids: set[uuid.UUID], limit: float) -> None:
    deadline = time.perf_counter() + limit
    while not ids <= received.keys() and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)


def _runtimes(
    db: Database, bus: EventBus, bootstrap: str | None, *, relay: bool = True
) -> list[EventRuntime]:
    """Embedded: one runtime (relay + queue). Kafka: the plugin's consumer group, then, unless
    the relay runs in a process of its own, the relay (as the worker runs it)."""
    if bootstrap is None:
        return [EventRuntime(db, {bus.plugin_id: bus})]
    consumer = EventRuntime(db, {bus.plugin_id: bus}, kafka_brokers=bootstrap, run_relay=False)
    return [consumer, EventRuntime(db, {}, kafka_brokers=bootstrap)] if relay else [consumer]


def _relay_process(url: str, bootstrap: str, started: Any, stop: Any) -> None:
    """The Kafka relay alone in a process, as the worker runs it beside the plugins' consumers,
    until ``stop`` is set; ``started`` gets the machine's monotonic time it began relaying."""

    async def run() -> None:
        db = Database(url, pool_size=5)
        async with EventRuntime(db, {}, kafka_brokers=bootstrap):
            started.value = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.05)
        await db.dispose()

    asyncio.run(run())


@contextlib.asynccontextmanager
async def worker_relay(url: str, bootstrap: str) -> AsyncIterator[tuple[psutil.Process, float]]:
    """The relay process: (its process, the monotonic time it began relaying)."""
    ctx = multiprocessing.get_context("spawn")
    started, stop = ctx.Value("d", 0.0), ctx.Event()
    proc = ctx.Process(target=_relay_process, args=(url, bootstrap, started, stop), daemon=True)
    proc.start()
    try:
        while started.value == 0.0:
            if not proc.is_alive():
                raise RuntimeError("the relay process ended before it relayed")
            await asyncio.sleep(0.005)
        yield psutil.Process(proc.pid), float(started.value)
    finally:
        stop.set()
        await asyncio.to_thread(proc.join, 30)


def postgres_cpu(data_dir: str) -> dict[int, float]:
    """CPU seconds of the postmaster serving ``data_dir`` and of each of its children
    (backends, WAL writer, ...), by pid: backends come and go, so compare by pid."""
    for proc in psutil.process_iter(["cmdline"]):
        if data_dir in " ".join(proc.info["cmdline"] or ()):
            out: dict[int, float] = {}
            with contextlib.suppress(psutil.Error):
                for p in [proc, *proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        out[p.pid] = _cpu_seconds(p)
            return out
    return {}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def bench_max(
    db: Database, bootstrap: str | None, n: int, pg_dir: str, relay_process: bool = False
) -> tuple[float, float, float, int]:
    """A backlog of ``n`` events drained by relay + delivery: (events/s, CPU ms per event in
    this process and the relay's, in PostgreSQL, events not delivered)."""
    bus, typ, tenants, received = await delivery_plugin(db)
    ids: set[uuid.UUID] = set()
    for chunk in range(0, n, 1000):
        async with db.session() as s:
            for i in range(chunk, min(n, chunk + 1000)):
                e = await service.publish(s, typ, {"i": i}, tenant_id=tenants[i % TENANTS])
                ids.add(e.id)
    consumer, *relay = _runtimes(db, bus, bootstrap, relay=not relay_process)
    async with consumer:
        await asyncio.wait_for(consumer.ready(), 60)
        async with contextlib.AsyncExitStack() as stack:
            pg = postgres_cpu(pg_dir)
            cpu, start, other = time.process_time(), time.monotonic(), 0.0
            if relay_process:
                assert bootstrap is not None
                proc, start = await stack.enter_async_context(
                    worker_relay(db.engine.url.render_as_string(hide_password=False), bootstrap)
                )
                other = -_cpu_seconds(proc)
            for runtime in relay:
                await stack.enter_async_context(runtime)
            await _wait_for(received, ids, 300)
            elapsed = time.monotonic() - start
            cpu = time.process_time() - cpu + (other + _cpu_seconds(proc) if relay_process else 0)
            pg_cpu = cpu_used(pg, postgres_cpu(pg_dir))
    got = max(len(ids & received.keys()), 1)
    return got / elapsed, cpu * 1000 / got, pg_cpu * 1000 / got, n - got


# The row ``service.publish`` writes (``outbox.insert_outbox``), sent by a lean client: the
# publisher is the load, not what is measured, and through SQLAlchemy sessions one Python
# process tops out near 400 events/s on this machine.
_OUTBOX_INSERT = (
    "INSERT INTO platform.outbox (id, tenant_id, type, source, time, data)"
    " VALUES ($1, $2, $3, '/bench', now(), $4::jsonb)"
)


def _publish_open_loop(
    dsn: str, typ: str, tenants: list[uuid.UUID], rate: float, seconds: float
) -> tuple[dict[uuid.UUID, float], float]:
    """Publish ``rate`` events/s on schedule, each in its own transaction (run in a process of
    its own, so that it shares no interpreter lock with the delivery it measures): (commit
    time per event id on the machine's monotonic clock, achieved events/s)."""

    async def run() -> tuple[dict[uuid.UUID, float], float]:
        # The disk's fsync queue is shared with other databases on this machine; the delivery
        # path is what is measured, not the publisher's flush.
        pool = await asyncpg.create_pool(
            dsn, min_size=20, max_size=50, server_settings={"synchronous_commit": "off"}
        )
        committed: dict[uuid.UUID, float] = {}

        async def one(i: int) -> None:
            event_id = uuid.uuid4()
            async with pool.acquire() as conn:
                # Taken as the statement (its own transaction) is sent: a publisher slow to
                # hear back from its commit must not shorten the latency.
                committed[event_id] = time.monotonic()
                await conn.execute(
                    _OUTBOX_INSERT, event_id, tenants[i % TENANTS], typ, json.dumps({"i": i})
                )

        total = int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - start)
        await pool.close()
        return committed, achieved

    return asyncio.run(run())


async def bench_rate(
    db: Database,
    dsn: str,
    bootstrap: str | None,
    rate: float,
    seconds: float,
    relay_process: bool = False,
) -> tuple[list[float], float, int]:
    """Open loop at ``rate``: (sorted commit → handler latencies in ms, achieved publish
    rate, events not delivered)."""
    bus, typ, tenants, received = await delivery_plugin(db)
    async with contextlib.AsyncExitStack() as stack:
        for runtime in _runtimes(db, bus, bootstrap, relay=not relay_process):
            await stack.enter_async_context(runtime)
            await asyncio.wait_for(runtime.ready(), 60)
        if relay_process:
            assert bootstrap is not None
            await stack.enter_async_context(
                worker_relay(db.engine.url.render_as_string(hide_password=False), bootstrap)
            )
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            # Warm up the publisher, connections, topics and the registry cache.
            warm, _ = await loop.run_in_executor(
                pool, _publish_open_loop, dsn, typ, tenants, 200, 1
            )
            await _wait_for(received, set(warm), 60)
            committed, achieved = await loop.run_in_executor(
                pool, _publish_open_loop, dsn, typ, tenants, rate, seconds
            )
        await _wait_for(received, set(committed), 60)
    lat = sorted(max(0.0, received[i] - t) * 1000 for i, t in committed.items() if i in received)
    return lat, achieved, len(committed) - len(lat)


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def bench_idle_runtime(db: Database, bootstrap: str | None, seconds: float) -> float:
    """% of a core this process spends with an event runtime (relay + delivery) and no
    events."""
    bus, _, _, _ = await delivery_plugin(db)
    async with contextlib.AsyncExitStack() as stack:
        for runtime in _runtimes(db, bus, bootstrap):
            await stack.enter_async_context(runtime)
            await asyncio.wait_for(runtime.ready(), 60)
        await asyncio.sleep(3)  # settle: first polls, group joins
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (time.process_time() - cpu) / (time.perf_counter() - start) * 100


def bench_idle_up(workdir: Path, seconds: float) -> list[tuple[str, float, float]]:
    """Each process of an idle ``plexica up``: (name, % of a core, RSS MB)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexica.cli", "up", "--port", str(port),
         "--data-dir", str(workdir / "up")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=180)
        time.sleep(5)  # settle: start-up work that ends after ready
        root = psutil.Process(proc.pid)
        procs = [root, *root.children(recursive=True)]
        before = {}
        for p in procs:
            with contextlib.suppress(psutil.Error):
                before[p.pid] = _cpu_seconds(p)
        start = time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - start
        out = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                name = " ".join(p.cmdline()[:4])[:60] or p.name()
                used = _cpu_seconds(p) - before.get(p.pid, 0.0)
                out.append((name, used / elapsed * 100, p.memory_info().rss / 2**20))
        return out
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


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


PARTS = ["delivery", "idle", "producers", "relay", "restart"]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--restart-events", type=int, default=1500)
    ap.add_argument(
        "--only", choices=PARTS, action="append", help="run only these parts (default: all)"
    )
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="plexica-bench-events-"))
    os.environ[servers.SESSION_ENV] = str(base)
    try:
        pg = servers.ensure("postgres")
        pg_url, pg_dir = pg["url"], pg["stop"]["data_dir"]
        bootstrap = servers.ensure("kafka")["bootstrap"]
        from tests.conftest import create_database

        dsn = await create_database(pg_url, "bench_events")
        url = Settings(database_url=dsn).sqlalchemy_url
        db = Database(url, pool_size=20)
        await upgrade_platform(db)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"broker: Apache Kafka {servers.KAFKA_VERSION} (KRaft, 1 node) at {bootstrap}")

        n = args.events
        parts = set(args.only or PARTS)
        modes: list[tuple[str, str | None]] = [("embedded", None), ("kafka", bootstrap)]
        if "delivery" in parts:
            # The third: Kafka with the relay in a process of its own, as deployed (the worker
            # relays, each plugin's consumer runs in the plugin's process).
            for mode, broker, apart in [
                *((m, b, False) for m, b in modes),
                ("kafka*", bootstrap, True),
            ]:
                rate, cpu, pg_cpu, lost = await bench_max(db, broker, n, pg_dir, apart)
                print(
                    f"{mode:8} max   commit -> handler: {rate:7.0f} events/s ({n} backlog;"
                    f" CPU/event: {cpu:.3f} ms in the process, {pg_cpu:.3f} ms in PostgreSQL;"
                    f" {lost} not delivered)"
                )
                lat, achieved, lost = await bench_rate(
                    db, dsn, broker, args.rate, args.seconds, apart
                )
                q = statistics.quantiles(lat, n=100)
                print(
                    f"{mode:8} {achieved:5.0f}/s commit -> handler: P50 {q[49]:.1f} ms"
                    f"  P95 {q[94]:.1f} ms  P99 {q[98]:.1f} ms  max {lat[-1]:.1f} ms"
                    f"  ({len(lat)} events, {lost} not delivered)"
                )
        if "idle" in parts:
            for mode, broker in modes:
                pct = await bench_idle_runtime(db, broker, args.idle_seconds)
                print(
                    f"{mode:8} idle event runtime: {pct:.2f} % of a core over {args.idle_seconds:g} s"
                )
            for name, pct, rss in await asyncio.to_thread(
                bench_idle_up, _mkdir(base / "idle-up"), args.idle_seconds
            ):
                print(f"idle plexica up: {pct:5.2f} % of a core  {rss:6.1f} MB RSS  {name}")
        if "producers" in parts:
            await bench_producers(bootstrap, n)
        if "relay" in parts:
            for relays in (1, 2):
                rate = await bench_relay(db, bootstrap, n, relays)
                print(f"relay throughput outbox -> Kafka, {relays} relay(s): {rate:8.0f} events/s")
        if "restart" in parts:
            committed, lost, dup, outage = await bench_restart(
                db, _mkdir(base / "restart-broker"), args.restart_events
            )
            print(
                f"broker kill -9 + restart ({outage:.1f} s outage): {committed} committed, "
                f"{lost} lost, {dup} redelivered duplicates"
            )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        await db.dispose()
    finally:
        servers.stop_all(base)


async def bench_producers(bootstrap: str, n: int) -> None:
    aio = await bench_aiokafka(bootstrap, n)
    ck = await asyncio.to_thread(bench_confluent, bootstrap, n)
    print(f"producer throughput ({n} records, acks=all, idempotent):")
    print(f"  aiokafka         {aio:10.0f} records/s")
    print(f"  confluent-kafka  {ck:10.0f} records/s")


if __name__ == "__main__":
    threading.stack_size(0)
    asyncio.run(main())
