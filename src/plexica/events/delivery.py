"""Delivery of events to plugin handlers: one dispatcher, two transports.

``Dispatcher`` decides whether a plugin gets an event (it consumes the type and is installed
and active for the event's tenant) and calls its handlers. ``KafkaDelivery`` feeds it from the
broker (one consumer group per plugin); ``QueueDelivery`` feeds it from the delivery queue in
PostgreSQL, which carries live events in the embedded mode and, in both modes, retries,
replays and dead-letter retries. A failed event never blocks its partition: it moves to the
queue with a backoff and, after ``max_attempts``, to the dead letters (table and topic).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from plexica.events.loop import Loop
from plexica.events.registry import SubscriptionRegistry
from plexica.events.relay import ensure_topics, family_topics
from plexica.events.repository import dead_letters, deliveries, plugin_api
from plexica.kit.db import Database
from plexica.kit.kafka import KafkaLogin, aiokafka_auth
from plexica_sdk import tracing
from plexica_sdk.events import Event, EventBus, InvalidEventError, from_kafka, to_kafka

log = structlog.get_logger("plexica.events.delivery")

DEAD_LETTER_TOPIC = "plexica.deadletter"

DELIVERED = Counter(
    "plexica_events_delivered_total", "Events handled by a plugin.", ["plugin", "outcome"]
)
CONSUMER_LAG = Gauge(
    "plexica_event_consumer_lag_messages",
    "Messages between a consumer group's position and the log end, after its last batch.",
    ["group", "topic"],
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0

    def delay(self, attempts: int) -> float:
        return float(min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempts - 1)))


def consumer_group(plugin_id: str) -> str:
    return f"plexica.plugin.{plugin_id}"


class Dispatcher:
    def __init__(self, registry: SubscriptionRegistry, buses: Mapping[str, EventBus]) -> None:
        self.registry = registry
        self.buses = dict(buses)

    async def deliver(self, plugin_id: str, event: Event) -> bool:
        """Call the plugin's handlers; False when the plugin does not get this event.
        A handler's exception propagates (the caller retries)."""
        bus = self.buses.get(plugin_id)
        handlers = bus.handlers(event.type) if bus is not None else []
        if not handlers or event.tenant_id is None:
            return False
        if not await self.registry.is_active(plugin_id, event.tenant_id):
            DELIVERED.labels(plugin_id, "skipped").inc()
            return False
        # In the trace of the request that published the event (its traceparent).
        with tracing.tracer(f"plugin-{plugin_id}").start_as_current_span(
            f"consume {event.type}",
            context=tracing.child_of(event.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.destination.name": event.type, "plexica.plugin": plugin_id},
        ):
            for handler in handlers:
                await handler(event)
        DELIVERED.labels(plugin_id, "ok").inc()
        return True


class DeadLetterTopic:
    """Copies dead letters to the dead-letter topic (binary mode plus plugin and error)."""

    def __init__(self, bootstrap: str, login: KafkaLogin | None = None) -> None:
        self.bootstrap = bootstrap
        self.login = login
        self._producer: Any = None

    async def send(self, plugin_id: str, event: Event, error: str) -> None:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            await ensure_topics(self.bootstrap, {DEAD_LETTER_TOPIC}, 1, login=self.login)
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                request_timeout_ms=5000,
                **aiokafka_auth(self.login),
            )
            await producer.start()
            self._producer = producer
        key, value, headers = to_kafka(event)
        headers += [("x-plexica-plugin", plugin_id.encode()), ("x-plexica-error", error.encode())]
        try:
            await self._producer.send_and_wait(DEAD_LETTER_TOPIC, value, key=key, headers=headers)
        except Exception:
            await self.close()
            raise

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


@dataclass(frozen=True)
class Queued:
    """A delivery claimed from the queue."""

    seq: int
    plugin_id: str
    event: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Setback:
    """An event a plugin failed to handle, as a retry or a dead letter records it."""

    plugin_id: str
    event: dict[str, Any]
    attempts: int
    error: str
    queued_seq: int | None = None  # its row in the queue; None when it came from Kafka


class DeliveryStore(Protocol):
    """Where delivery keeps its state: the queue (retries, replays) and the dead letters."""

    async def claim(self, plugin_ids: Sequence[str], limit: int, lease: float) -> list[Queued]: ...

    async def delivered(self, seqs: Sequence[int]) -> None: ...

    async def retry(self, setback: Setback, delay_seconds: float) -> None: ...

    async def dead_letter(self, setback: Setback) -> None: ...


class PlatformStore:
    """The platform's tables, with the platform's login (worker, embedded mode)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, plugin_ids: Sequence[str], limit: int, lease: float) -> list[Queued]:
        async with self.db.session() as session:
            rows = await deliveries.claim_deliveries(session, plugin_ids, limit, lease)
        return [Queued(int(r.seq), str(r.plugin_id), dict(r.event), int(r.attempts)) for r in rows]

    async def delivered(self, seqs: Sequence[int]) -> None:
        async with self.db.session() as session:
            await deliveries.delete_deliveries(session, seqs)

    async def retry(self, setback: Setback, delay_seconds: float) -> None:
        async with self.db.session() as session:
            if setback.queued_seq is None:
                await deliveries.enqueue_delivery(
                    session,
                    setback.plugin_id,
                    setback.event,
                    reason="retry",
                    attempts=setback.attempts,
                    delay_seconds=delay_seconds,
                    error=setback.error,
                )
            else:
                await deliveries.reschedule_delivery(
                    session, setback.queued_seq, setback.attempts, delay_seconds, setback.error
                )

    async def dead_letter(self, setback: Setback) -> None:
        async with self.db.session() as session:
            await dead_letters.insert_dead_letter(
                session,
                uuid.uuid4(),
                setback.plugin_id,
                setback.event,
                setback.error,
                setback.attempts,
            )
            if setback.queued_seq is not None:
                await deliveries.delete_delivery(session, setback.queued_seq)


class WrongPluginLoginError(RuntimeError):
    pass


class PluginLoginStore:
    """The same state reached by a plugin's own login (ADR 0078): only through the functions
    of schema ``plugin_api``, which act on that plugin's rows and no other."""

    def __init__(self, db: Database, plugin_id: str) -> None:
        self.db = db
        self.plugin_id = plugin_id

    async def check(self) -> None:
        """Fail at start when the login is not this plugin's."""
        async with self.db.session() as session:
            owner = await plugin_api.own_plugin_id(session)
        if owner != self.plugin_id:
            raise WrongPluginLoginError(
                f"the database login is plugin {owner}'s, not {self.plugin_id}'s"
            )

    def _own(self, plugin_id: str) -> None:
        if plugin_id != self.plugin_id:
            raise WrongPluginLoginError(f"this process delivers to {self.plugin_id} only")

    async def claim(self, plugin_ids: Sequence[str], limit: int, lease: float) -> list[Queued]:
        if self.plugin_id not in plugin_ids:
            return []
        async with self.db.session() as session:
            rows = await plugin_api.own_claim_deliveries(session, limit, lease)
        return [Queued(int(r.seq), self.plugin_id, dict(r.event), int(r.attempts)) for r in rows]

    async def delivered(self, seqs: Sequence[int]) -> None:
        async with self.db.session() as session:
            await plugin_api.own_delivered(session, seqs)

    async def retry(self, setback: Setback, delay_seconds: float) -> None:
        self._own(setback.plugin_id)
        async with self.db.session() as session:
            await plugin_api.own_retry(
                session,
                setback.event,
                setback.attempts,
                delay_seconds,
                setback.error,
                setback.queued_seq,
            )

    async def dead_letter(self, setback: Setback) -> None:
        self._own(setback.plugin_id)
        async with self.db.session() as session:
            await plugin_api.own_dead_letter(
                session, setback.event, setback.error, setback.attempts, setback.queued_seq
            )


class Failures:
    """What happens after a handler failed: a later retry, or the dead letters."""

    def __init__(
        self, store: DeliveryStore, policy: RetryPolicy, topic: DeadLetterTopic | None = None
    ) -> None:
        self.store = store
        self.policy = policy
        self.topic = topic
        self.next_retry_at = float("inf")  # monotonic time of the soonest retry scheduled here

    async def failed(
        self,
        plugin_id: str,
        event: dict[str, Any],
        attempts: int,
        error: str,
        *,
        queued_seq: int | None = None,
    ) -> None:
        setback = Setback(plugin_id, event, attempts, error, queued_seq)
        if attempts >= self.policy.max_attempts:
            if self.topic is not None:
                with contextlib.suppress(InvalidEventError, ValueError):
                    await self.topic.send(plugin_id, Event.model_validate(event), error)
            await self.store.dead_letter(setback)
            log.warning("event_dead_lettered", plugin=plugin_id, event_id=event.get("id"))
            DELIVERED.labels(plugin_id, "dead_letter").inc()
            return
        delay = self.policy.delay(attempts)
        self.next_retry_at = min(self.next_retry_at, time.monotonic() + delay)
        await self.store.retry(setback, delay)
        DELIVERED.labels(plugin_id, "retry").inc()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\x00", "")[:2000]


class QueueDelivery(Loop):
    """Delivers from the queue (``platform.event_deliveries``) to the plugins hosted by this
    process, a claimed batch at a time (ADR 0190).

    The batch is split by plugin and tenant: each tenant's events go to its handlers one after
    the other in queue order, different tenants concurrently. A failed event is set aside (retry
    or dead letter) and its neighbours go on. The rows handled are deleted in one commit at the
    end; a crash before it hands the batch out again once the lease ends, and handlers, which
    record the event ids they applied in their own transaction, skip what they already did."""

    def __init__(
        self,
        store: DeliveryStore,
        dispatcher: Dispatcher,
        failures: Failures,
        *,
        batch_size: int = 500,
        lease_seconds: float = 60.0,
        poll_seconds: float = 5.0,
        concurrency: int = 16,
    ) -> None:
        super().__init__()
        self.store = store
        self.dispatcher = dispatcher
        self.failures = failures
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency

    async def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            if await self.step() < self.batch_size:
                retry_in = self.failures.next_retry_at - time.monotonic()
                if retry_in <= 0:
                    self.failures.next_retry_at = float("inf")
                    continue
                await self.idle(min(self.poll_seconds, retry_in))

    async def step(self) -> int:
        plugins = sorted(self.dispatcher.buses)
        if not plugins:
            return 0
        rows = await self.store.claim(plugins, self.batch_size, self.lease_seconds)
        groups: dict[Hashable, list[Queued]] = {}
        for row in rows:
            groups.setdefault((row.plugin_id, row.event.get("tenant_id")), []).append(row)
        gate = asyncio.Semaphore(self.concurrency)

        async def in_order(group: list[Queued]) -> list[int]:
            async with gate:
                return [row.seq for row in group if await self._one(row)]

        done = await asyncio.gather(*(in_order(group) for group in groups.values()))
        handled = [seq for seqs in done for seq in seqs]
        if handled:
            await self.store.delivered(handled)
        return len(rows)

    async def _one(self, row: Queued) -> bool:
        """Handle one queued event; False when it was set aside (retry or dead letter)."""
        seq, plugin_id, stored = row.seq, row.plugin_id, row.event
        try:
            event = Event.model_validate(stored)
        except ValueError as exc:
            await self.failures.failed(
                plugin_id, stored, self.failures.policy.max_attempts, _describe(exc),
                queued_seq=seq,
            )  # fmt: skip
            return False
        try:
            await self.dispatcher.deliver(plugin_id, event)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried
            await self.failures.failed(
                plugin_id, stored, row.attempts + 1, _describe(exc), queued_seq=seq
            )
            return False
        return True


class KafkaDelivery(Loop):
    """One consumer group per plugin over the topics of the families it consumes.

    Offsets are committed after the batch was handled (at least once). A failed event is tried
    once here and then moved to the delivery queue, so the partition keeps flowing."""

    def __init__(
        self,
        bootstrap: str,
        plugin_id: str,
        dispatcher: Dispatcher,
        failures: Failures,
        *,
        topic_partitions: int = 6,
        login: KafkaLogin | None = None,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.login = login
        self.plugin_id = plugin_id
        self.dispatcher = dispatcher
        self.failures = failures
        self.topic_partitions = topic_partitions
        self.assigned = asyncio.Event()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
        from aiokafka.errors import KafkaError

        bus = self.dispatcher.buses[self.plugin_id]
        topics = family_topics(bus.event_types)
        await ensure_topics(self.bootstrap, topics, self.topic_partitions, login=self.login)
        assigned = self.assigned

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                assigned.clear()

            async def on_partitions_assigned(self, partitions: Any) -> None:
                assigned.set()

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=consumer_group(self.plugin_id),
            client_id=f"plexica-delivery-{self.plugin_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # An idle consumer's fetch waits this long at the broker; data ends it at once.
            fetch_max_wait_ms=500,
            max_poll_records=500,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            request_timeout_ms=15_000,
            **aiokafka_auth(self.login),
        )
        consumer.subscribe(sorted(topics), listener=_Listener())
        await consumer.start()
        group = consumer_group(self.plugin_id)
        lag: dict[Any, int] = {}
        try:
            while not self.stopping.is_set():
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        await self._handle(record)
                    end = consumer.highwater(tp)
                    if end is not None and records:
                        lag[tp] = max(end - records[-1].offset - 1, 0)
                if batches:
                    for topic in {tp.topic for tp in batches}:
                        behind = sum(n for tp, n in lag.items() if tp.topic == topic)
                        CONSUMER_LAG.labels(group, topic).set(behind)
                    try:
                        await consumer.commit()
                    except KafkaError as exc:
                        # The batch comes again to this or another member: handlers dedupe.
                        log.warning("commit_failed", plugin=self.plugin_id, error=repr(exc))
        finally:
            await consumer.stop()

    async def _handle(self, record: Any) -> None:
        try:
            event = from_kafka(record.value, list(record.headers or ()))
        except InvalidEventError as exc:
            raw = {
                "id": str(uuid.uuid4()),
                "type": "invalid",
                "source": f"kafka:{record.topic}/{record.partition}@{record.offset}",
                # base64: PostgreSQL JSON cannot hold every byte string (e.g. NUL).
                "value_base64": base64.b64encode(record.value or b"").decode(),
                "headers": [k for k, _ in record.headers or ()],
            }
            await self.failures.failed(
                self.plugin_id, raw, self.failures.policy.max_attempts, _describe(exc)
            )
            return
        try:
            await self.dispatcher.deliver(self.plugin_id, event)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried
            stored = json.loads(event.model_dump_json())
            await self.failures.failed(self.plugin_id, stored, 1, _describe(exc))
