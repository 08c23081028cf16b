"""A plugin process that consumes its events from Kafka with only its own database login
(ADR 0078): its handler runs, failures are retried and dead-lettered where the operator sees
them, and the login reaches no delivery state but its own plugin's."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from plexica.app import create_app
from plexica.events import service
from plexica.events.delivery import (
    DEAD_LETTER_TOPIC,
    PluginLoginStore,
    RetryPolicy,
    WrongPluginLoginError,
)
from plexica.events.repository import dead_letters, deliveries
from plexica.events.runtime import EventRuntime, consume_in_process
from plexica.kit.db import Database
from plexica.plugins import service as plugins_service
from plexica.settings import Settings
from plexica_sdk.db import asyncpg_url
from plexica_sdk.events import Event
from tests.events.conftest import eventually, make_plugin, new_plugin_id, read_topic
from tests.support.tokens import StaticIssuers

FAST = RetryPolicy(max_attempts=3, base_delay_seconds=0.05, max_delay_seconds=0.2)


async def login_url(db: Database, database_url: str, plugin_id: str) -> str:
    async with db.session() as s:
        login = await plugins_service.ensure_login(s, plugin_id)
    return login.database_url(database_url)


@pytest.fixture
async def login_db() -> AsyncIterator[list[Database]]:
    opened: list[Database] = []
    yield opened
    for database in opened:
        await database.dispose()


async def test_a_plugin_process_with_only_its_login_consumes_from_kafka(
    db: Database, kafka: str, database_url: str
) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [typ], [tenant])
    own = await login_url(db, database_url, plugin.bus.plugin_id)
    app = FastAPI()
    app.state.event_bus = plugin.bus
    # What `plexica serve plugin` gives the process: the broker and the plugin's login only.
    settings = Settings(database_url=None, kafka_brokers=kafka)
    consume_in_process(app, settings, own)

    async with app.router.lifespan_context(app), EventRuntime(db, {}, kafka_brokers=kafka):
        async with db.session() as s:
            mine = await service.publish(s, typ, {"amount": "10.00"}, tenant_id=tenant)
            await service.publish(s, typ, {"amount": "20.00"}, tenant_id=other)
        await eventually(lambda: len(plugin.received) >= 1, timeout=40)
        await asyncio.sleep(0.5)  # the other tenant's event, were it wrongly delivered, arrives
    assert plugin.ids == [mine.id]


async def test_failures_are_retried_and_dead_lettered_for_the_operator(
    db: Database, kafka: str, database_url: str, login_db: list[Database]
) -> None:
    tenant = uuid.uuid4()
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [], [tenant])
    bus = plugin.bus
    attempts: list[uuid.UUID] = []
    healed = False

    @bus.subscribe(typ)
    async def handle(event: Event) -> None:
        attempts.append(event.id)
        if not healed:
            raise ValueError("cannot handle this deal")

    async with db.session() as s:
        await service.register_subscriptions(s, bus.plugin_id, [typ])
    own = Database(asyncpg_url(await login_url(db, database_url, bus.plugin_id)), pool_size=2)
    login_db.append(own)
    consumer = EventRuntime.for_plugin_login(own, bus, kafka_brokers=kafka, policy=FAST)
    async with consumer, EventRuntime(db, {}, kafka_brokers=kafka):
        await asyncio.wait_for(consumer.ready(), 30)
        async with db.session() as s:
            poison = await service.publish(s, typ, {"deal": "d1"}, tenant_id=tenant)

        issuers = StaticIssuers()
        app = create_app(Settings(database_url=database_url), db=db, verifier=issuers.verifier())
        op = issuers.operator_headers()
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):

            async def listed() -> list[dict[str, object]]:
                r = await client.get(
                    "/v1/events/dead-letters", headers=op, params={"plugin_id": bus.plugin_id}
                )
                assert r.status_code == 200, r.text
                return list(r.json())

            async def dead() -> bool:
                return bool(await listed())

            await eventually(dead, timeout=40)
            [letter] = await listed()
            assert letter["event_id"] == str(poison.id)
            assert letter["attempts"] == FAST.max_attempts
            assert "cannot handle this deal" in str(letter["error"])
            assert attempts == [poison.id] * FAST.max_attempts

            records = await read_topic(kafka, DEAD_LETTER_TOPIC, 1)
            mine = [r for r in records if dict(r.headers)["ce_id"] == str(poison.id).encode()]
            assert [dict(r.headers)["x-plexica-plugin"] for r in mine] == [bus.plugin_id.encode()]

            healed = True
            r = await client.post(f"/v1/events/dead-letters/{letter['id']}/retry", headers=op)
            assert r.status_code == 200, r.text
        await eventually(lambda: len(attempts) == FAST.max_attempts + 1)

        async def queue_empty() -> bool:
            async with db.session() as s:
                n = await s.scalar(text("SELECT count(*) FROM platform.event_deliveries"))
            return bool(n == 0)

        await eventually(queue_empty)


async def _seed_foreign_state(db: Database, other: str, tenant: uuid.UUID) -> tuple[int, uuid.UUID]:
    """A queued delivery and a dead letter of another plugin."""
    ev = Event(source="/t", type=f"{other}.deal.won", tenant_id=tenant, data={}).model_dump(
        mode="json"
    )
    letter = uuid.uuid4()
    async with db.session() as s:
        await deliveries.enqueue_delivery(s, other, ev, reason="retry", attempts=1)
        await dead_letters.insert_dead_letter(s, letter, other, ev, "boom", 5)
        seq = await s.scalar(
            text("SELECT seq FROM platform.event_deliveries WHERE plugin_id = :p"), {"p": other}
        )
    return int(seq), letter


async def test_a_plugin_login_reaches_only_its_own_delivery_state(
    db: Database, database_url: str, login_db: list[Database]
) -> None:
    mine_t, theirs_t = uuid.uuid4(), uuid.uuid4()
    me = await make_plugin(db, [], [mine_t])
    them = await make_plugin(db, [], [theirs_t])
    pid, other = me.bus.plugin_id, them.bus.plugin_id
    foreign_seq, foreign_letter = await _seed_foreign_state(db, other, theirs_t)
    url = await login_url(db, database_url, pid)
    await login_url(db, database_url, other)

    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT plugin_api.plugin_id()") == pid
        for table in (
            "event_deliveries", "dead_letters", "event_consumers", "event_subscriptions",
            "outbox", "plugin_logins", "plugin_installations", "tenants",
        ):  # fmt: skip
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM platform.{table} LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM platform.event_deliveries")
        # The platform's private helper is not a function the plugin may call.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT platform.plugin_api_checked_event($1, '{}'::jsonb)", other)

        assert await conn.fetchval("SELECT plugin_api.event_consumer_active($1)", mine_t)
        assert not await conn.fetchval("SELECT plugin_api.event_consumer_active($1)", theirs_t)
        assert await conn.fetch("SELECT * FROM plugin_api.event_claim_deliveries(100, 30)") == []
        assert not await conn.fetchval("SELECT plugin_api.event_delivered($1)", foreign_seq)
        assert not await conn.fetchval(
            "SELECT plugin_api.event_retry('{}'::jsonb, 9, 0, 'x', $1)", foreign_seq
        )
        own_event = json.dumps(
            Event(source="/t", type=f"{pid}.a.b", tenant_id=mine_t).model_dump(mode="json")
        )
        # A dead letter of its own does not remove the other plugin's queued row.
        await conn.fetchval(
            "SELECT plugin_api.event_dead_letter($1::jsonb, 'x', 1, $2)", own_event, foreign_seq
        )
        # Nor may it write state for a tenant it is not installed in.
        theirs_event = json.dumps(
            Event(source="/t", type=f"{pid}.a.b", tenant_id=theirs_t).model_dump(mode="json")
        )
        for sql in (
            "SELECT plugin_api.event_retry($1::jsonb, 1, 0, 'x')",
            "SELECT plugin_api.event_dead_letter($1::jsonb, 'x', 1)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(sql, theirs_event)
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetchval("SELECT plugin_api.event_retry('[1]'::jsonb, 1, 0, 'x')")
    finally:
        await conn.close()

    async with db.session() as s:
        queued = (
            await s.execute(
                text("SELECT attempts FROM platform.event_deliveries WHERE seq = :s"),
                {"s": foreign_seq},
            )
        ).scalar_one()
        letters = {
            (str(r.plugin_id), r.id)
            for r in await dead_letters.list_dead_letters(
                s, plugin_id=None, tenant_id=None, status=None, limit=100
            )
        }
    assert queued == 1
    assert (other, foreign_letter) in letters
    assert {p for p, _ in letters} == {pid, other}

    # The platform's own login is no plugin's, and a process started with another plugin's
    # login refuses to deliver.
    with pytest.raises(Exception, match="not a plugin login"):
        async with db.session() as s:
            await s.execute(text("SELECT plugin_api.plugin_id()"))
    wrong = Database(asyncpg_url(url), pool_size=1)
    login_db.append(wrong)
    with pytest.raises(WrongPluginLoginError):
        await PluginLoginStore(wrong, other).check()
