"""The outbox relay: leases pending outbox rows, hands them to a sink, marks what was accepted.

Several relays may run at once: a row is leased by one of them (``FOR UPDATE SKIP LOCKED`` and
``lease_until``) and marked published only after the sink acknowledged it, so a crash or a
broker outage leaves the row pending and it is sent again when the lease expires (at least
once; consumers dedupe on the event id). The sink is Kafka in the distributed mode; in the
embedded mode ``LocalRelay`` moves rows to the delivery queue in the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import Row

from plexica.events.catalog import LOCAL_SCHEMA_BASE
from plexica.events.loop import Loop
from plexica.events.repository import dead_letters, outbox
from plexica.kit.db import Database
from plexica.kit.kafka import KafkaLogin, aiokafka_auth
from plexica_sdk.events import Event, event_family, to_kafka

log = structlog.get_logger("plexica.events.relay")

OUTBOX_PENDING = Gauge("plexica_outbox_pending_events", "Outbox events not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "plexica_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox event."
)
DEAD_LETTERS = Gauge(
    "plexica_event_dead_letters", "Dead letters waiting for an operator (retry or discard)."
)
RELAYED = Counter("plexica_outbox_relayed_events_total", "Outbox events acknowledged by the sink.")
RELAY_FAILURES = Counter("plexica_outbox_relay_failures_total", "Sink sends that failed.")


class Sink(Protocol):
    async def send(self, events: Sequence[tuple[int, Event]]) -> list[int]:
        """Send events; return the outbox seqs the sink has durably accepted."""
        ...


def event_of(row: Row[Any], schema_base: str) -> Event:
    return Event(
        id=row.id,
        source=row.source,
        type=row.type,
        time=row.time,
        subject=row.subject,
        tenant_id=row.tenant_id,
        traceparent=row.traceparent,
        dataschema=schema_base + row.dataschema if row.dataschema else None,
        data=row.data,
    )


class Relay(Loop):
    def __init__(
        self,
        db: Database,
        sink: Sink,
        *,
        batch_size: int = 500,
        lease_seconds: float = 30.0,
        poll_seconds: float = 5.0,
        max_backoff_seconds: float = 5.0,
        lag_interval_seconds: float = 1.0,
        schema_base: str = LOCAL_SCHEMA_BASE,
    ) -> None:
        """``schema_base`` is the core API's URL, which makes each event's dataschema
        absolute."""
        super().__init__()
        self.db = db
        self.schema_base = schema_base
        self.sink = sink
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff_seconds
        self.lag_interval = lag_interval_seconds
        self._lag_at = 0.0

    async def run(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            self.wake.clear()
            sent, failed = await self.step()
            if failed:
                await self.pause(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 0.1
            if sent < self.batch_size:
                await self.idle(self.poll_seconds)

    async def step(self) -> tuple[int, bool]:
        """One batch: (events acknowledged, whether the sink failed on some)."""
        await self._export_lag()
        async with self.db.session() as session:
            rows = await outbox.claim_outbox(session, self.batch_size, self.lease_seconds)
        if not rows:
            return 0, False
        batch = [(int(row.seq), event_of(row, self.schema_base)) for row in rows]
        try:
            acked = await self.sink.send(batch)
        except Exception as exc:  # noqa: BLE001 - the rows stay pending and are sent again
            log.warning("relay_send_failed", error=repr(exc), events=len(batch))
            acked = []
        acked_set = set(acked)
        unacked = [seq for seq, _ in batch if seq not in acked_set]
        async with self.db.session() as session:
            if acked:
                await outbox.mark_published(session, acked)
            if unacked:
                await outbox.release_outbox(session, unacked)
        RELAYED.inc(len(acked))
        if unacked:
            RELAY_FAILURES.inc()
        return len(acked), bool(unacked)

    async def _export_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < self.lag_interval:
            return
        self._lag_at = now
        async with self.db.session() as session:
            pending, age = await outbox.outbox_lag(session)
            dead = await dead_letters.dead_letters_pending(session)
        OUTBOX_PENDING.set(pending)
        OUTBOX_OLDEST_AGE.set(age)
        DEAD_LETTERS.set(dead)


class LocalRelay(Relay):
    """Embedded mode: the delivery queue in the same database is the broker, so a batch is
    leased, queued for its subscribers and marked published in one statement and one commit."""

    def __init__(self, db: Database, **kwargs: Any) -> None:
        super().__init__(db, _InPlace(), **kwargs)

    async def step(self) -> tuple[int, bool]:
        await self._export_lag()
        async with self.db.session() as session:
            moved = await outbox.move_to_queue(session, self.batch_size, self.schema_base)
        RELAYED.inc(moved)
        return moved, False


class _InPlace:
    async def send(self, events: Sequence[tuple[int, Event]]) -> list[int]:
        raise NotImplementedError("LocalRelay moves its batches in the database")


class KafkaSink:
    """Publishes to ``<family>`` topics in CloudEvents binary mode, key = tenant id.

    The producer is idempotent (acks=all); after a failed send it is rebuilt, so that a broker
    that restarted does not leave it stuck on stale connections or sequence numbers."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "plexica-relay",
        request_timeout_ms: int = 5000,
        topic_partitions: int = 6,
        login: KafkaLogin | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.login = login
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.topic_partitions = topic_partitions
        self._producer: Any = None
        self._topics: set[str] = set()

    async def _ensure_producer(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=self.request_timeout_ms,
                retry_backoff_ms=100,
                **aiokafka_auth(self.login),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def send(self, events: Sequence[tuple[int, Event]]) -> list[int]:
        try:
            producer = await self._ensure_producer()
            await ensure_topics(
                self.bootstrap,
                {event.family for _, event in events} - self._topics,
                self.topic_partitions,
                self._topics,
                login=self.login,
            )
        except Exception:
            await self.close()
            raise
        pending: list[tuple[int, asyncio.Future[Any]]] = []
        failed = False
        for seq, event in events:
            key, value, headers = to_kafka(event)
            try:
                fut = await producer.send(event.family, value, key=key, headers=headers)
            except Exception as exc:  # noqa: BLE001 - unsent rows stay pending
                log.warning("kafka_send_failed", error=repr(exc))
                failed = True
                break
            pending.append((seq, fut))
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        acked = [
            seq
            for (seq, _), r in zip(pending, results, strict=True)
            if not isinstance(r, BaseException)
        ]
        if failed or len(acked) < len(pending):
            await self.close()
        return acked

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


async def ensure_topics(
    bootstrap: str,
    topics: set[str],
    partitions: int,
    known: set[str] | None = None,
    replication_factor: int = 1,
    *,
    login: KafkaLogin | None = None,
) -> None:
    """Create missing topics (brokers in production do not auto-create them).

    A principal lists only the topics it may describe: with ACLs (ADR 0218) a plugin's own
    topics exist already, made by the platform when it granted them."""
    if not topics:
        return
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, **aiokafka_auth(login)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(topics - existing)
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, partitions, replication_factor) for name in missing]
                )
    finally:
        await admin.close()
    if known is not None:
        known.update(topics)


def family_topics(event_types: set[str] | frozenset[str]) -> set[str]:
    return {event_family(t) for t in event_types}
