"""Consumers can rely on order and uniqueness (real Kafka): the records of one tenant reach a
handler in outbox order, and a fresh consumer group that replays the whole topic ends in the
same state as the group that followed it live."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from plexica.events import service
from plexica.events.delivery import (
    Dispatcher,
    Failures,
    KafkaDelivery,
    PlatformStore,
    RetryPolicy,
)
from plexica.events.registry import DbSubscriptionRegistry
from plexica.events.relay import KafkaSink, Relay
from plexica.kit.db import Database
from plexica_sdk.events import Event
from tests.events.conftest import eventually, make_plugin, new_plugin_id
from tests.events.test_relay import _drain

EVENTS, SUBJECTS = 60, 4


@dataclass
class State:
    """What a consumer builds: effects applied once per event id, in the order received."""

    seen: set[uuid.UUID] = field(default_factory=set)
    values: dict[tuple[uuid.UUID | None, str | None], int] = field(default_factory=dict)
    order: dict[uuid.UUID | None, list[int]] = field(default_factory=lambda: defaultdict(list))

    def apply(self, event: Event) -> None:
        if event.id in self.seen:
            return
        self.seen.add(event.id)
        self.values[(event.tenant_id, event.subject)] = int(event.data["n"])
        self.order[event.tenant_id].append(int(event.data["n"]))


async def _follow(db: Database, kafka: str, event_type: str, tenants: list[uuid.UUID]) -> State:
    """A new plugin (so a new consumer group) reading the topic until it has every event."""
    plugin = await make_plugin(db, [event_type], tenants)
    state = State()

    @plugin.bus.subscribe(event_type)
    async def apply(event: Event) -> None:
        state.apply(event)

    dispatcher = Dispatcher(DbSubscriptionRegistry(db), {plugin.bus.plugin_id: plugin.bus})
    failures = Failures(PlatformStore(db), RetryPolicy())
    consumer = KafkaDelivery(kafka, plugin.bus.plugin_id, dispatcher, failures)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(state.seen) >= EVENTS or task.done(), timeout=120)
    finally:
        consumer.stop()
        await task
    return state


async def test_a_fresh_consumer_group_replaying_the_topic_gets_the_same_state(
    db: Database, kafka: str
) -> None:
    event_type = new_plugin_id() + ".item.set"
    tenants = [uuid.uuid4() for _ in range(3)]
    published: dict[uuid.UUID | None, list[int]] = defaultdict(list)
    for n in range(EVENTS):
        tenant = tenants[n % len(tenants)]
        async with db.session() as s:
            await service.publish(
                s, event_type, {"n": n}, tenant_id=tenant, subject=f"items/{n % SUBJECTS}"
            )
        published[tenant].append(n)
    sink = KafkaSink(kafka)
    try:
        await _drain(Relay(db, sink), db)
    finally:
        await sink.close()

    live = await _follow(db, kafka, event_type, tenants)
    replayed = await _follow(db, kafka, event_type, tenants)
    assert len(live.seen) == len(replayed.seen) == EVENTS
    assert dict(live.order) == dict(replayed.order) == dict(published)
    assert live.values == replayed.values
