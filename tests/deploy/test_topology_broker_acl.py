"""ADR 0218, 0253 in the local topology: behind a broker with SASL/SCRAM and ACLs, each plugin
process holds its own principal; CRM's cannot read or write Billing's topics, Billing's consumes
crm.deal with its own group; core and worker relay on the platform's principal, and no process
holds the broker's administrator."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from deploy.local.topology import LocalTopology
from plexica.events import service
from plexica.events.acl import PLATFORM_PRINCIPAL
from plexica.kit.db import Database
from plexica.kit.kafka import KafkaLogin
from plexica_sdk.db import asyncpg_url
from tests.harness.servers import KafkaBroker

pytestmark = pytest.mark.slow

ADMIN = ("plexica", secrets.token_urlsafe(24))


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    """A broker of this topology's own: the shipped plugins' principals live on it."""
    with tempfile.TemporaryDirectory(prefix="plexica-kafka-acl-") as workdir:
        running = KafkaBroker(Path(workdir), admin=ADMIN)
        running.start()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def topology(broker: KafkaBroker) -> Iterator[LocalTopology]:
    env = {
        "PLEXICA_KAFKA_BROKERS": broker.bootstrap,
        "PLEXICA_KAFKA_ADMIN_USERNAME": ADMIN[0],
        "PLEXICA_KAFKA_ADMIN_PASSWORD": ADMIN[1],
    }
    with (
        tempfile.TemporaryDirectory(prefix="plexica-local-") as workdir,
        LocalTopology(
            Path(workdir), plugins=["crm", "billing"], gateway=False, extra_env=env
        ) as running,
    ):
        yield running


def environ(topology: LocalTopology, name: str) -> dict[str, str]:
    raw = Path(f"/proc/{topology.processes[name].proc.pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def login_of(topology: LocalTopology, name: str) -> KafkaLogin:
    env = environ(topology, name)
    return KafkaLogin(env["PLEXICA_KAFKA_USERNAME"], env["PLEXICA_KAFKA_PASSWORD"])


def test_each_process_holds_its_own_principal_and_none_the_administrator(
    topology: LocalTopology,
) -> None:
    for slug in ("crm", "billing"):
        env = environ(topology, f"plugin-{slug}")
        assert env["PLEXICA_KAFKA_USERNAME"] == f"plexica-plugin-{slug}"
    for name in ("core", "worker"):
        assert environ(topology, name)["PLEXICA_KAFKA_USERNAME"] == PLATFORM_PRINCIPAL
    for name in topology.processes:
        assert ADMIN[1] not in environ(topology, name).values(), name


async def test_the_crm_process_cannot_read_or_write_billing_topics(
    topology: LocalTopology, broker: KafkaBroker
) -> None:
    crm = login_of(topology, "plugin-crm")
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=5000, **crm.aiokafka()
    )
    await producer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # its own family: allowed once the grants are in force
            try:
                await producer.send_and_wait("crm.deal", b"probe")
                break
            except KafkaError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait("billing.invoice", b"forged")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "billing.invoice",
        bootstrap_servers=broker.bootstrap,
        group_id="plexica.plugin.crm",
        **crm.aiokafka(),
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.start()
    finally:
        await consumer.stop()


async def test_the_billing_process_consumes_crm_deal_with_its_group(
    topology: LocalTopology, broker: KafkaBroker
) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **KafkaLogin(*ADMIN).librdkafka()})

    def assigned_topics() -> set[str]:
        [future] = admin.describe_consumer_groups(["plexica.plugin.billing"]).values()
        try:
            group = future.result(timeout=10)
        except KafkaException:  # e.g. NOT_COORDINATOR while the group's coordinator loads
            return set()
        return {
            tp.topic
            for member in group.members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
        }

    deadline = asyncio.get_running_loop().time() + 120
    while "crm.deal" not in await asyncio.to_thread(assigned_topics):
        # The grants step or the process's supervised restart brings it in.
        assert asyncio.get_running_loop().time() < deadline, "billing never joined its group"
        await asyncio.sleep(0.5)


async def test_the_worker_relays_on_the_platform_principal(
    topology: LocalTopology, broker: KafkaBroker
) -> None:
    """An event committed to the outbox reaches its family's topic: the worker's relay writes
    (and makes topics) as the platform's principal, not as the administrator."""
    db = Database(asyncpg_url(topology.database_url), pool_size=1)
    try:
        async with db.session() as s:
            event = await service.publish(
                s, "crm.deal.won", {"deal_id": "relayed"}, tenant_id=uuid.uuid4()
            )
    finally:
        await db.dispose()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        **KafkaLogin(*ADMIN).aiokafka(),
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 120
        partitions = [TopicPartition("crm.deal", p) for p in range(6)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: set[bytes] = set()
        while str(event.id).encode() not in seen:
            assert asyncio.get_running_loop().time() < deadline, "the event was never relayed"
            batch = await consumer.getmany(timeout_ms=500)
            seen |= {v for rs in batch.values() for r in rs for k, v in r.headers if k == "ce_id"}
    finally:
        await consumer.stop()
