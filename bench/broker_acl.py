"""Broker logins and ACLs (ADR 0218) on real Apache Kafka 4 brokers on loopback.

    .venv/bin/python -m bench.broker_acl [--plugins 40] [--messages 500]

Prints the time to grant a plugin (SCRAM user, topics, ACLs) the first time and again with
nothing to change, how long until a fresh grant is in force at the broker, and the produce →
consume round trip of a plugin principal at the SASL/SCRAM broker with the StandardAuthorizer
against a client at the same broker configured without SASL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from plexica.events.acl import BrokerAdmin, grant_plugin
from plexica.events.delivery import consumer_group
from plexica.kit.kafka import KafkaLogin
from tests.harness import servers


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _row(name: str, xs: list[float]) -> None:
    print(
        f"{name:<44} P50 {statistics.median(xs):7.1f}  P95 {_pct(xs, 0.95):7.1f}"
        f"  max {max(xs):7.1f} ms  (n={len(xs)})"
    )


async def _allowed(bootstrap: str, login: KafkaLogin, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **login.aiokafka())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"probe")
    finally:
        await producer.stop()


async def bench_grants(admin: BrokerAdmin, bootstrap: str, n: int) -> None:
    first, again, in_force = [], [], []
    for _ in range(n):
        plugin = "b" + uuid.uuid4().hex[:8]
        types = ([f"{plugin}.deal.won"], [f"{plugin}.deal.won", f"{plugin}.invoice.paid"])
        t0 = time.perf_counter()
        access = await grant_plugin(admin, plugin, "db-password", *types)
        granted = time.perf_counter()
        first.append((granted - t0) * 1000)
        while True:
            try:
                await _allowed(bootstrap, access.login, f"{plugin}.invoice")
                break
            except KafkaError:
                await asyncio.sleep(0.02)
        in_force.append((time.perf_counter() - granted) * 1000)
        t0 = time.perf_counter()
        await grant_plugin(admin, plugin, "db-password", *types)
        again.append((time.perf_counter() - t0) * 1000)
    _row("grant a new plugin (user, 3 topics, 5 ACLs)", first)
    _row("until its grants are in force (first produce)", in_force)
    _row("grant again, nothing to change", again)


async def round_trips(bootstrap: str, login: KafkaLogin | None, topic: str, n: int) -> list[float]:
    auth = login.aiokafka() if login else {}
    group = consumer_group(topic.split(".", maxsplit=1)[0])
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
        fetch_max_wait_ms=100, **auth,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, **auth)
    await consumer.start()
    await producer.start()
    out: list[float] = []
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for i in range(n + 20):
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, str(i).encode())
            got = False
            while not got:
                batch = await consumer.getmany(timeout_ms=1000)
                got = any(r.value == str(i).encode() for rs in batch.values() for r in rs)
            if i >= 20:  # the first ones warm the connections
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugins", type=int, default=40)
    ap.add_argument("--messages", type=int, default=500)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="plexica-bench-brokeracl-"))
    os.environ[servers.SESSION_ENV] = str(base)
    try:
        info = servers.ensure("kafka-sasl")
        bootstrap = str(info["bootstrap"])
        admin = BrokerAdmin(bootstrap, KafkaLogin(info["username"], info["password"]))
        plain = str(servers.ensure("kafka")["bootstrap"])
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        await bench_grants(admin, bootstrap, args.plugins)
        plugin = "r" + uuid.uuid4().hex[:8]
        typ = f"{plugin}.ping.sent"
        access = await grant_plugin(admin, plugin, "db-password", [typ], [typ])
        await asyncio.sleep(1)  # the grants reach the authorizer
        topic = f"{plugin}.ping"
        for name, (server, login) in {
            "round trip, plugin principal (SCRAM + ACLs)": (bootstrap, access.login),
            "round trip, no SASL (same Kafka, plaintext)": (plain, None),
        }.items():
            _row(name, await round_trips(server, login, topic, args.messages))
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        servers.stop_all(base)


if __name__ == "__main__":
    asyncio.run(main())
