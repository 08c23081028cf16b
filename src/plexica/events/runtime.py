"""Running the event machinery in a process: the worker's relay job, and the relay plus
delivery for the plugins a process hosts (the embedded mode runs both in one process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import structlog
from fastapi import FastAPI

from plexica.events import service
from plexica.events.catalog import LOCAL_SCHEMA_BASE, schema_base
from plexica.events.delivery import (
    DeadLetterTopic,
    DeliveryStore,
    Dispatcher,
    Failures,
    KafkaDelivery,
    PlatformStore,
    PluginLoginStore,
    QueueDelivery,
    RetryPolicy,
)
from plexica.events.loop import DELIVERIES_CHANNEL, OUTBOX_CHANNEL, Loop, Wakeups
from plexica.events.registry import (
    DbSubscriptionRegistry,
    PluginLoginRegistry,
    SubscriptionRegistry,
)
from plexica.events.relay import KafkaSink, LocalRelay, Relay
from plexica.kit.db import Database
from plexica.kit.kafka import KafkaLogin
from plexica.kit.supervise import restart_on_failure
from plexica.settings import Settings
from plexica_sdk.db import asyncpg_url
from plexica_sdk.events import Event, EventBus
from plexica_sdk.revocation import listen_connect

log = structlog.get_logger("plexica.events")


async def relay_job(db: Database, settings: Settings) -> None:
    """The worker's outbox relay: to Kafka when brokers are configured, else in-process."""
    sink = (
        KafkaSink(settings.kafka_brokers, login=settings.kafka_login())
        if settings.kafka_brokers
        else None
    )
    base = schema_base(settings)
    relay = (
        Relay(db, sink, schema_base=base) if sink is not None else LocalRelay(db, schema_base=base)
    )
    wakeups = Wakeups(listen_connect(db.engine, "plexica-events"))
    wakeups.add(OUTBOX_CHANNEL, relay)
    wakeups.start()
    try:
        await relay.run()
    finally:
        await wakeups.aclose()
        if sink is not None:
            await sink.close()


def plugin_event_buses(apps: Mapping[str, FastAPI]) -> dict[str, EventBus]:
    """The event buses of mounted plugin apps (a plugin app exposes ``state.event_bus``)."""
    buses: dict[str, EventBus] = {}
    for app in apps.values():
        bus = getattr(app.state, "event_bus", None)
        if isinstance(bus, EventBus):
            buses[bus.plugin_id] = bus
    return buses


def consume_in_process(
    app: FastAPI, settings: Settings, plugin_database_url: str | None = None
) -> None:
    """A plugin running as its own service consumes its events from Kafka in its own process:
    its consumer group starts and stops with the app (the worker runs the relay).

    With ``plugin_database_url`` (the plugin's own login, ADR 0076) the consumer keeps its
    state through the plugin_api functions (ADR 0078) and the platform's login is not used;
    without, it uses the platform's (a plugin trusted with it)."""
    buses = plugin_event_buses({"self": app})
    if not buses or not settings.kafka_brokers:
        return
    if plugin_database_url is None and settings.database_url is None:
        return
    brokers, login = settings.kafka_brokers, settings.kafka_login()
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:
            if plugin_database_url is not None:
                db = Database(asyncpg_url(plugin_database_url), pool_size=2)
                [bus] = buses.values()
                runtime = EventRuntime.for_plugin_login(
                    db, bus, kafka_brokers=brokers, kafka_login=login
                )
            else:
                db = Database(settings.sqlalchemy_url, pool_size=2)
                runtime = EventRuntime(
                    db, buses, kafka_brokers=brokers, kafka_login=login, run_relay=False
                )
            try:
                async with runtime:
                    yield state
            finally:
                await db.dispose()

    app.router.lifespan_context = lifespan


async def _publish_plugin_event(session: Any, event: Event) -> None:
    await service.publish_event(session, event)


async def _supervised(name: str, loop: Loop) -> None:
    await restart_on_failure(
        loop.run,
        failed=lambda wait: log.exception("events_task_failed", task=name, retry_in_s=wait),
        wait=loop.pause,
        stopping=loop.stopping,
        first_wait=0.5,
    )


class EventRuntime:
    """Relay (optional) and delivery to ``buses`` for as long as the context is open.

    With ``kafka_brokers`` the relay publishes to Kafka and each plugin consumes its own group;
    without, the outbox is delivered through the queue in PostgreSQL. ``store`` keeps the
    queue and dead letters (the platform's tables by default). Plugin buses get the outbox as
    their publish transport unless ``outbox_publisher`` is off."""

    def __init__(
        self,
        db: Database,
        buses: Mapping[str, EventBus],
        *,
        kafka_brokers: str | None = None,
        kafka_login: KafkaLogin | None = None,
        run_relay: bool = True,
        registry: SubscriptionRegistry | None = None,
        store: DeliveryStore | None = None,
        policy: RetryPolicy | None = None,
        grace_seconds: float = 10.0,
        outbox_publisher: bool = True,
        schema_base: str = LOCAL_SCHEMA_BASE,
    ) -> None:
        self.db = db
        self.grace_seconds = grace_seconds
        self.buses = dict(buses)
        self.kafka_brokers = kafka_brokers
        self.run_relay = run_relay
        self.dispatcher = Dispatcher(registry or DbSubscriptionRegistry(db), self.buses)
        self.topic = DeadLetterTopic(kafka_brokers, kafka_login) if kafka_brokers else None
        self.store = store or PlatformStore(db)
        self.outbox_publisher = outbox_publisher
        self.failures = Failures(self.store, policy or RetryPolicy(), self.topic)
        self.sink = KafkaSink(kafka_brokers, login=kafka_login) if kafka_brokers else None
        self.relay = (
            Relay(db, self.sink, schema_base=schema_base)
            if self.sink is not None
            else LocalRelay(db, schema_base=schema_base)
        )
        self.queue = QueueDelivery(self.store, self.dispatcher, self.failures)
        self.consumers = (
            [
                KafkaDelivery(
                    kafka_brokers, plugin_id, self.dispatcher, self.failures, login=kafka_login
                )
                for plugin_id, bus in self.buses.items()
                if bus.event_types
            ]
            if kafka_brokers
            else []
        )
        self.wakeups = Wakeups(listen_connect(db.engine, "plexica-events"))
        self._tasks: list[asyncio.Task[None]] = []
        self._loops: list[Loop] = []

    @classmethod
    def for_plugin_login(
        cls,
        db: Database,
        bus: EventBus,
        *,
        kafka_brokers: str,
        kafka_login: KafkaLogin | None = None,
        policy: RetryPolicy | None = None,
    ) -> EventRuntime:
        """Delivery to one plugin in its own process, ``db`` logged in as that plugin: no relay,
        state through the plugin_api functions; the plugin publishes with its tenant session
        (``plexica_sdk.db.publish``), so its bus gets no outbox transport here."""
        return cls(
            db,
            {bus.plugin_id: bus},
            kafka_brokers=kafka_brokers,
            kafka_login=kafka_login,
            run_relay=False,
            registry=PluginLoginRegistry(db, bus.plugin_id),
            store=PluginLoginStore(db, bus.plugin_id),
            policy=policy,
            outbox_publisher=False,
        )

    async def __aenter__(self) -> EventRuntime:
        if isinstance(self.store, PluginLoginStore):
            await self.store.check()
        for bus in self.buses.values():
            if self.outbox_publisher:
                bus.use_publisher(_publish_plugin_event)
        jobs: list[tuple[str, Loop]] = [("queue", self.queue)]
        self.wakeups.add(DELIVERIES_CHANNEL, self.queue)
        if self.run_relay:
            jobs.append(("relay", self.relay))
            self.wakeups.add(OUTBOX_CHANNEL, self.relay)
        self.wakeups.start()
        jobs += [(f"consumer:{c.plugin_id}", c) for c in self.consumers]
        self._loops = [loop for _, loop in jobs]
        self._tasks = [
            asyncio.create_task(_supervised(name, loop), name=f"events.{name}")
            for name, loop in jobs
        ]
        return self

    async def ready(self) -> None:
        """Wait until every Kafka consumer has its partitions."""
        await asyncio.gather(*(c.assigned.wait() for c in self.consumers))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Let each loop finish the batch in hand (its handlers' transactions commit), then stop.
        for loop in self._loops:
            loop.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.grace_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dispatcher.registry.aclose()
        await self.wakeups.aclose()
        if self.sink is not None:
            await self.sink.close()
        if self.topic is not None:
            await self.topic.close()
