"""Batched delivery from the queue: exactly-once effects across a crash, order per tenant,
poison set aside, and loops woken by NOTIFY rather than by polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from plexica.events import service
from plexica.events.delivery import (
    Dispatcher,
    Failures,
    PlatformStore,
    QueueDelivery,
    RetryPolicy,
)
from plexica.events.registry import DbSubscriptionRegistry
from plexica.events.relay import LocalRelay
from plexica.events.runtime import EventRuntime
from plexica.kit.db import Database
from plexica_sdk.events import Event, ensure_processed_events_table, first_delivery
from tests.events.conftest import eventually, make_plugin, new_plugin_id

ONCE = RetryPolicy(max_attempts=1)


class ProcessCrashedError(Exception):
    pass


class CrashBeforeCommit(PlatformStore):
    """The process dies after the handlers committed, before the queue rows are deleted."""

    async def delivered(self, seqs: Sequence[int]) -> None:
        raise ProcessCrashedError


async def _queue(db: Database) -> int:
    async with db.session() as s:
        result = await s.execute(text("SELECT count(*) FROM platform.event_deliveries"))
        return int(result.scalar_one())


async def _fan_out(db: Database) -> None:
    relay = LocalRelay(db)
    while (await relay.step())[0]:
        pass


async def test_a_batch_retried_after_a_crash_between_handler_and_commit_applies_effects_once(
    db: Database, tenant: uuid.UUID
) -> None:
    typ = f"{new_plugin_id()}.invoice.paid"
    plugin = await make_plugin(db, [], [tenant])
    bus = plugin.bus
    schema = "evtest_" + bus.plugin_id
    async with db.session() as s:
        await s.execute(text(f'CREATE SCHEMA "{schema}"'))
    async with db.session(schema) as s:
        await ensure_processed_events_table(s)
        await s.execute(text("CREATE TABLE paid (event_id uuid, amount int)"))
    calls = 0

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        nonlocal calls
        # The effect and the record of having applied it commit together.
        async with db.session(schema) as s:
            if await first_delivery(s, event, "ledger"):
                await s.execute(
                    text("INSERT INTO paid VALUES (:e, :a)"),
                    {"e": event.id, "a": event.data["amount"]},
                )
        calls += 1

    async with db.session() as s:
        await service.register_subscriptions(s, bus.plugin_id, [typ])
        events = [await service.publish(s, typ, {"amount": i}, tenant_id=tenant) for i in range(50)]
    await _fan_out(db)
    buses = {bus.plugin_id: bus}
    dispatcher = Dispatcher(DbSubscriptionRegistry(db), buses)
    crashing = CrashBeforeCommit(db)
    first = QueueDelivery(crashing, dispatcher, Failures(crashing, ONCE), lease_seconds=0)
    with pytest.raises(ProcessCrashedError):
        await first.step()
    assert calls == 50
    assert await _queue(db) == 50  # the whole batch comes again

    async with EventRuntime(db, buses):  # the next process
        await eventually(lambda: calls == 100, timeout=60)

        async def drained() -> bool:
            return await _queue(db) == 0

        await eventually(drained, timeout=60)
    async with db.session(schema) as s:
        rows = (await s.execute(text("SELECT event_id, amount FROM paid"))).all()
    assert sorted(r.amount for r in rows) == list(range(50))
    assert {r.event_id for r in rows} == {e.id for e in events}


async def test_a_poison_event_is_set_aside_and_each_tenants_order_is_kept(
    db: Database, tenant: uuid.UUID
) -> None:
    other = uuid.uuid4()
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [], [tenant, other])
    bus = plugin.bus
    got: dict[uuid.UUID, list[int]] = {tenant: [], other: []}

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        assert event.tenant_id is not None
        if event.data.get("poison"):
            raise ValueError("cannot handle this deal")
        await asyncio.sleep(0)  # let the other tenant's handler run in between
        got[event.tenant_id].append(int(event.data["i"]))

    async with db.session() as s:
        await service.register_subscriptions(s, bus.plugin_id, [typ])
        for i in range(40):
            await service.publish(s, typ, {"i": i, "poison": i == 7}, tenant_id=tenant)
            await service.publish(s, typ, {"i": i}, tenant_id=other)
    await _fan_out(db)
    store = PlatformStore(db)
    queue = QueueDelivery(
        store,
        Dispatcher(DbSubscriptionRegistry(db), {bus.plugin_id: bus}),
        Failures(store, ONCE, None),
    )
    assert await queue.step() == 80
    assert got[tenant] == [i for i in range(40) if i != 7]
    assert got[other] == list(range(40))
    assert await _queue(db) == 0
    async with db.session() as s:
        [letter] = await service.list_dead_letters(s, plugin_id=bus.plugin_id)
    assert letter.event["data"] == {"i": 7, "poison": True}


async def test_an_idle_runtime_is_woken_by_the_commit_not_by_its_poll(
    db: Database, tenant: uuid.UUID
) -> None:
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [typ], [tenant])
    runtime = EventRuntime(db, {plugin.bus.plugin_id: plugin.bus})
    # Safety polls far longer than the test's deadline: only a notification can deliver.
    runtime.relay.poll_seconds = runtime.queue.poll_seconds = 3600
    async with runtime:
        await asyncio.wait_for(runtime.wakeups.listening.wait(), 30)
        await eventually(
            lambda: not runtime.queue.wake.is_set() and not runtime.relay.wake.is_set()
        )
        async with db.session() as s:
            event = await service.publish(s, typ, {"i": 1}, tenant_id=tenant)
        await eventually(lambda: plugin.ids == [event.id], timeout=60)
