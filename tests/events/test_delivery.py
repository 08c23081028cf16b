"""Delivery to plugin handlers through Kafka and in-process: tenants, retries, DLQ, dedupe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from sqlalchemy import text

from plexica.app import create_app
from plexica.events import service
from plexica.events.delivery import DEAD_LETTER_TOPIC, RetryPolicy, consumer_group
from plexica.events.runtime import EventRuntime, plugin_event_buses
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica_sdk.events import (
    Event,
    EventBus,
    ensure_processed_events_table,
    event_family,
    first_delivery,
)
from tests.conftest import error_of, running
from tests.events.conftest import eventually, make_plugin, new_plugin_id, read_topic
from tests.support.tokens import StaticIssuers

FAST = RetryPolicy(max_attempts=3, base_delay_seconds=0.05, max_delay_seconds=0.2)


async def test_only_plugins_active_for_the_tenant_receive(db: Database, kafka: str) -> None:
    ns = new_plugin_id()
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    typ = f"{ns}.deal.won"
    active = await make_plugin(db, [typ], [t1])
    disabled = await make_plugin(db, [typ], [t1])
    async with db.session() as s:
        await service.set_plugin_active(s, disabled.bus.plugin_id, t1, False)
    buses = {p.bus.plugin_id: p.bus for p in (active, disabled)}
    async with EventRuntime(db, buses, kafka_brokers=kafka, policy=FAST) as rt:
        await asyncio.wait_for(rt.ready(), 30)
        async with db.session() as s:
            for_t1 = await service.publish(s, typ, {"d": 1}, tenant_id=t1)
            await service.publish(s, typ, {"d": 2}, tenant_id=t2)
            last = await service.publish(s, typ, {"d": 3}, tenant_id=t1)
        await eventually(lambda: len(active.received) >= 2)
        await asyncio.sleep(0.3)
    assert active.ids == [for_t1.id, last.id]
    assert all(e.tenant_id == t1 for e in active.received)
    assert disabled.received == []


async def test_poison_event_goes_to_the_dlq_without_blocking_and_retry_works(
    db: Database, kafka: str, tenant: uuid.UUID
) -> None:
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [], [tenant])
    bus = plugin.bus
    healed = False
    got: list[Event] = []

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        if event.data.get("poison") and not healed:
            raise ValueError("cannot handle this deal")
        got.append(event)

    async with db.session() as s:
        await service.register_subscriptions(s, bus.plugin_id, [typ])
    async with EventRuntime(db, {bus.plugin_id: bus}, kafka_brokers=kafka, policy=FAST) as rt:
        await asyncio.wait_for(rt.ready(), 30)
        async with db.session() as s:
            poison = await service.publish(s, typ, {"poison": True}, tenant_id=tenant)
        async with db.session() as s:
            good = [await service.publish(s, typ, {"i": i}, tenant_id=tenant) for i in range(5)]
        await eventually(lambda: len(got) == 5)
        assert [e.id for e in got] == [e.id for e in good]

        async def dead() -> bool:
            async with db.session() as s:
                return bool(await service.list_dead_letters(s, plugin_id=bus.plugin_id))

        await eventually(dead)
        async with db.session() as s:
            [letter] = await service.list_dead_letters(s, plugin_id=bus.plugin_id)
        assert letter.event_id == poison.id
        assert letter.attempts == FAST.max_attempts
        assert "cannot handle this deal" in letter.error

        records = await read_topic(kafka, DEAD_LETTER_TOPIC, 1)
        mine = [r for r in records if dict(r.headers)["ce_id"] == str(poison.id).encode()]
        assert len(mine) == 1
        assert dict(mine[0].headers)["x-plexica-plugin"] == bus.plugin_id.encode()

        healed = True
        issuers = StaticIssuers()
        app = create_app(
            Settings(database_url=str(db.engine.url)), db=db, verifier=issuers.verifier()
        )
        async for client in running(app):
            r = await client.post(
                f"/v1/events/dead-letters/{letter.id}/retry", headers=issuers.operator_headers()
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "retried"
        await eventually(lambda: len(got) == 6)
        assert got[-1].id == poison.id


async def test_handler_runs_once_per_event_id_even_after_forced_redelivery(
    db: Database, kafka: str, tenant: uuid.UUID
) -> None:
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [], [tenant])
    bus = plugin.bus
    schema = "evtest_" + bus.plugin_id
    async with db.session() as s:
        await s.execute(text(f'CREATE SCHEMA "{schema}"'))
    async with db.session(schema) as s:
        await ensure_processed_events_table(s)
        await s.execute(text("CREATE TABLE won (event_id uuid)"))
    calls = 0

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        nonlocal calls
        async with db.session(schema) as s:
            if await first_delivery(s, event, "won-counter"):
                await s.execute(text("INSERT INTO won VALUES (:e)"), {"e": event.id})
        calls += 1

    async with db.session() as s:
        await service.register_subscriptions(s, bus.plugin_id, [typ])
        event = await service.publish(s, typ, {"deal": "x"}, tenant_id=tenant)
    buses = {bus.plugin_id: bus}
    async with EventRuntime(db, buses, kafka_brokers=kafka, policy=FAST) as rt:
        await asyncio.wait_for(rt.ready(), 30)
        await eventually(lambda: calls == 1)
    # Forced redelivery: rewind the plugin's consumer group, and replay the tenant's history.
    rewind = AIOKafkaConsumer(
        bootstrap_servers=kafka, group_id=consumer_group(bus.plugin_id), enable_auto_commit=False
    )
    await rewind.start()
    try:
        tps = await _partitions(rewind, event_family(typ))
        rewind.assign(tps)
        await rewind.seek_to_beginning(*tps)
        await rewind.commit(dict.fromkeys(tps, 0))
    finally:
        await rewind.stop()
    async with db.session() as s:
        assert await service.replay_for_plugin(s, bus.plugin_id, tenant) == 1
    async with EventRuntime(db, buses, kafka_brokers=kafka, run_relay=False, policy=FAST) as rt:
        await asyncio.wait_for(rt.ready(), 30)
        await eventually(lambda: calls == 3)
    async with db.session(schema) as s:
        rows = (await s.execute(text("SELECT event_id FROM won"))).scalars().all()
    assert rows == [event.id]


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def test_embedded_delivery_without_broker_survives_restarts(
    db: Database, tenant: uuid.UUID
) -> None:
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [typ], [tenant])
    buses = {plugin.bus.plugin_id: plugin.bus}
    async with EventRuntime(db, buses):
        async with db.session() as s:
            first = await service.publish(s, typ, {"n": 1}, tenant_id=tenant)
        await eventually(lambda: len(plugin.received) == 1)
    # Committed while no process delivers: it waits in PostgreSQL for the next start.
    async with db.session() as s:
        second = await service.publish(s, typ, {"n": 2}, tenant_id=tenant)
    settings = Settings(database_url=str(db.engine.url.render_as_string(hide_password=False)))
    plugin_app = FastAPI()
    plugin_app.state.event_bus = plugin.bus
    app = create_app(settings, db=db, event_buses=plugin_event_buses({"p": plugin_app}))
    async for _ in running(app):
        await eventually(lambda: len(plugin.received) == 2)
    assert plugin.ids == [first.id, second.id]


async def test_plugin_publishes_through_the_outbox_and_bad_payloads_are_refused(
    db: Database, tenant: uuid.UUID
) -> None:
    from pydantic import BaseModel

    from plexica_sdk.events import InvalidEventError

    class DealWon(BaseModel):
        deal_id: str
        amount: int

    producer = EventBus(new_plugin_id())
    producer.emits(f"{producer.plugin_id}.deal.won", DealWon)
    typ = f"{producer.plugin_id}.deal.won"
    consumer = await make_plugin(db, [typ], [tenant])
    buses = {producer.plugin_id: producer, consumer.bus.plugin_id: consumer.bus}
    async with EventRuntime(db, buses):
        with pytest.raises(InvalidEventError, match="does not match DealWon") as bad:
            async with db.session() as s:
                await producer.publish(
                    s, typ, {"deal_id": "d1", "amount": "lots"}, tenant_id=tenant
                )
        assert bad.value.status == 422
        with pytest.raises(InvalidEventError, match="not declared"):
            async with db.session() as s:
                await producer.publish(s, f"{producer.plugin_id}.deal.lost", {}, tenant_id=tenant)
        async with db.session() as s:
            sent = await producer.publish(
                s, typ, DealWon(deal_id="d1", amount=5), tenant_id=tenant, subject="d1"
            )
        await eventually(lambda: len(consumer.received) == 1)
    [got] = consumer.received
    assert got.id == sent.id
    assert got.data == {"deal_id": "d1", "amount": 5}
    assert got.source == f"/plugins/{producer.plugin_id}"
    async with db.session() as s:
        n = await s.scalar(text("SELECT count(*) FROM platform.outbox"))
    assert n == 1


@pytest.fixture
async def operator_api(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, StaticIssuers]]:
    issuers = StaticIssuers()
    app = create_app(Settings(database_url=str(db.engine.url)), db=db, verifier=issuers.verifier())
    async for client in running(app):
        yield client, issuers


async def test_dead_letter_api_lists_discards_and_guards(
    db: Database, tenant: uuid.UUID, operator_api: tuple[httpx.AsyncClient, StaticIssuers]
) -> None:
    from plexica.events.repository import dead_letters

    client, issuers = operator_api
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with db.session() as s:
        for i, dl in enumerate(ids):
            ev = Event(source="/t", type="crm.deal.won", tenant_id=tenant, data={"i": i})
            await dead_letters.insert_dead_letter(
                s, dl, "crm", ev.model_dump(mode="json"), "boom", 5
            )
    op = issuers.operator_headers()
    r = await client.get("/v1/events/dead-letters", headers=op, params={"plugin_id": "crm"})
    assert r.status_code == 200
    assert {d["id"] for d in r.json()} == {str(i) for i in ids}

    r = await client.post(f"/v1/events/dead-letters/{ids[0]}/discard", headers=op)
    assert r.json()["status"] == "discarded"
    r = await client.post(f"/v1/events/dead-letters/{ids[0]}/retry", headers=op)
    assert r.status_code == 409
    assert error_of(r)["code"] == "dead_letter_resolved"
    r = await client.post(f"/v1/events/dead-letters/{uuid.uuid4()}/retry", headers=op)
    assert r.status_code == 404
    assert error_of(r)["code"] == "dead_letter_not_found"
    r = await client.get("/v1/events/dead-letters", headers=op, params={"status": "discarded"})
    assert [d["id"] for d in r.json()] == [str(ids[0])]

    member = {"Authorization": f"Bearer {issuers.token(roles=['member'])}"}
    r = await client.get("/v1/events/dead-letters", headers=member)
    assert r.status_code == 403
    r = await client.get("/v1/events/dead-letters")
    assert r.status_code == 401

    r = await client.post(
        "/v1/events/replays", headers=op,
        json={"plugin_id": "crm", "tenant_id": str(tenant), "event_types": ["crm.deal.won"]},
    )  # fmt: skip
    assert r.status_code == 422
    assert error_of(r)["code"] == "invalid_event"
    r = await client.post("/v1/events/replays", headers=op, json={"plugin_id": "Bad!"})
    assert r.status_code == 422

    async with db.session() as s:
        await service.register_subscriptions(s, "crm", ["crm.deal.won"])
        await service.publish(s, "crm.deal.won", {"d": 1}, tenant_id=tenant)
        await s.execute(text("UPDATE platform.outbox SET published_at = now()"))
    body = {"plugin_id": "crm", "tenant_id": str(tenant)}
    r = await client.post("/v1/events/replays", headers=op, json=body)
    assert r.status_code == 409
    assert error_of(r)["code"] == "plugin_not_active"
    async with db.session() as s:
        await service.set_plugin_active(s, "crm", tenant, True)
    r = await client.post("/v1/events/replays", headers=op, json=body)
    assert r.status_code == 202
    assert r.json() == {"plugin_id": "crm", "tenant_id": str(tenant), "queued": 1}


async def test_replay_gives_a_newly_installed_plugin_the_tenants_history(
    db: Database, tenant: uuid.UUID
) -> None:
    ns = new_plugin_id()
    won, lost = f"{ns}.deal.won", f"{ns}.deal.lost"
    other_tenant = uuid.uuid4()
    early = await make_plugin(db, [won, lost], [tenant])
    async with EventRuntime(db, {early.bus.plugin_id: early.bus}):
        async with db.session() as s:
            history = [
                await service.publish(s, won, {"i": 1}, tenant_id=tenant),
                await service.publish(s, lost, {"i": 2}, tenant_id=tenant),
                await service.publish(s, won, {"i": 3}, tenant_id=other_tenant),
            ]
        await eventually(lambda: len(early.received) == 2)
    late = await make_plugin(db, [won, lost], [tenant])
    async with db.session() as s:
        assert await service.replay_for_plugin(s, late.bus.plugin_id, tenant, [won]) == 1
        assert await service.replay_for_plugin(s, late.bus.plugin_id, tenant) == 2
    async with EventRuntime(db, {late.bus.plugin_id: late.bus}, run_relay=False):
        await eventually(lambda: len(late.received) == 3)
    assert late.ids == [history[0].id, history[0].id, history[1].id]
    assert early.ids == [history[0].id, history[1].id]


async def test_a_record_that_is_not_a_cloudevent_is_dead_lettered_and_the_partition_flows(
    db: Database, kafka: str, tenant: uuid.UUID
) -> None:
    from aiokafka import AIOKafkaProducer

    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [typ], [tenant])
    bus = plugin.bus
    async with EventRuntime(db, {bus.plugin_id: bus}, kafka_brokers=kafka, policy=FAST) as rt:
        await asyncio.wait_for(rt.ready(), 30)
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            await producer.send_and_wait(
                event_family(typ), b"\x00garbage", key=str(tenant).encode(), partition=0
            )
        finally:
            await producer.stop()
        async with db.session() as s:
            good = await service.publish(s, typ, {"ok": True}, tenant_id=tenant)
        await eventually(lambda: plugin.ids == [good.id])

        async def dead() -> bool:
            async with db.session() as s:
                return bool(await service.list_dead_letters(s, plugin_id=bus.plugin_id))

        await eventually(dead)
    async with db.session() as s:
        [letter] = await service.list_dead_letters(s, plugin_id=bus.plugin_id)
    assert letter.type == "invalid"
    assert "not a CloudEvents binary-mode record" in letter.error


async def test_the_worker_runs_the_relay_job(db: Database, kafka: str, tenant: uuid.UUID) -> None:
    from plexica.worker import create_worker_app

    family = new_plugin_id() + ".deal"
    settings = Settings(
        database_url=db.engine.url.render_as_string(hide_password=False), kafka_brokers=kafka
    )
    async with db.session() as s:
        event = await service.publish(s, f"{family}.won", {}, tenant_id=tenant)
    app = create_worker_app(settings)
    async for client in running(app):
        records = await read_topic(kafka, family, 1)
        assert (await client.get("/ready")).status_code == 200
    assert [dict(r.headers)["ce_id"] for r in records] == [str(event.id).encode()]
