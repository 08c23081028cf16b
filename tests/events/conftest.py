"""Events fixtures: the real Kafka broker, clean event tables, plugins with buses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from plexica.events import service
from plexica.kit.db import Database
from plexica_sdk.events import Event, EventBus
from tests.harness import servers

EVENT_TABLES = "platform.outbox, platform.event_deliveries, platform.dead_letters," \
    " platform.event_subscriptions, platform.event_consumers"  # fmt: skip


@pytest.fixture(scope="session")
def kafka() -> str:
    return str(servers.ensure("kafka")["bootstrap"])


@pytest.fixture(autouse=True)
async def clean_events(db: Database) -> None:
    async with db.session() as s:
        await s.execute(text(f"TRUNCATE {EVENT_TABLES}"))


def new_plugin_id() -> str:
    return "p" + uuid.uuid4().hex[:10]


@dataclass
class Recorder:
    """A plugin's bus whose handlers record what they got."""

    bus: EventBus
    received: list[Event] = field(default_factory=list)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [e.id for e in self.received]


async def make_plugin(
    db: Database, types: list[str], active_for: list[uuid.UUID], plugin_id: str | None = None
) -> Recorder:
    pid = plugin_id or new_plugin_id()
    recorder = Recorder(EventBus(pid))

    @recorder.bus.subscribe(*types)
    async def record(event: Event) -> None:
        recorder.received.append(event)

    async with db.session() as s:
        await service.register_subscriptions(s, pid, types)
        for tenant in active_for:
            await service.set_plugin_active(s, pid, tenant, True)
    return recorder


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 60.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` from the beginning, with a plain consumer (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = None
        deadline = asyncio.get_running_loop().time() + timeout
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                if asyncio.get_running_loop().time() > deadline:
                    return []
                await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            positions = [await consumer.position(tp) for tp in tps]
            done = all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True))
            if done and len(records) >= expect:
                break
            if done:
                end = await consumer.end_offsets(tps)
                await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def tenant() -> uuid.UUID:
    return uuid.uuid4()
