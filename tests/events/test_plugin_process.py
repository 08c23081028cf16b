"""A plugin running as its own service (`plexica serve plugin <slug>`) consumes its events
from Kafka in its own process, while the worker's relay publishes them."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import FastAPI

from plexica.events import service
from plexica.events.runtime import EventRuntime, consume_in_process
from plexica.kit.db import Database
from plexica.settings import Settings
from tests.events.conftest import eventually, make_plugin, new_plugin_id


async def test_a_plugin_service_consumes_its_events_from_kafka(
    db: Database, kafka: str, database_url: str
) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    typ = f"{new_plugin_id()}.deal.won"
    plugin = await make_plugin(db, [typ], [tenant])
    app = FastAPI()  # what a plugin app exposes: its event bus on the state
    app.state.event_bus = plugin.bus
    consume_in_process(app, Settings(database_url=database_url, kafka_brokers=kafka))

    async with app.router.lifespan_context(app), EventRuntime(db, {}, kafka_brokers=kafka):
        async with db.session() as s:
            mine = await service.publish(s, typ, {"amount": "10.00"}, tenant_id=tenant)
            await service.publish(s, typ, {"amount": "20.00"}, tenant_id=other)
        await eventually(lambda: len(plugin.received) >= 1, timeout=40)
        await asyncio.sleep(0.5)  # the other tenant's event, were it wrongly delivered, arrives
    assert plugin.ids == [mine.id]


def test_without_a_broker_a_plugin_app_is_left_as_it_is(database_url: str) -> None:
    app = FastAPI()
    before = app.router.lifespan_context
    consume_in_process(app, Settings(database_url=database_url))
    assert app.router.lifespan_context is before
