"""ADR 0218, 0253: at a broker with SASL/SCRAM and ACLs, each plugin logs in as its own principal
and may read only the families it consumes (with its own group) and write only its own; the
platform's principal relays every family and administers nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from plexica.events import service
from plexica.events.acl import (
    PLATFORM_PRINCIPAL,
    BrokerAdmin,
    Grant,
    Operation,
    PluginAccess,
    Resource,
    acl_binding,
    broker_password,
    grant_platform,
    grant_plugin,
    plugin_grants,
)
from plexica.events.delivery import DEAD_LETTER_TOPIC, consumer_group
from plexica.events.relay import ensure_topics
from plexica.events.runtime import EventRuntime
from plexica.kit.db import Database
from plexica.kit.kafka import KafkaLogin
from plexica.plugins import broker
from plexica.plugins import service as plugins_service
from plexica.plugins.schemas import VersionStatus
from plexica_sdk.db import asyncpg_url
from plexica_sdk.events import Event, EventBus
from plexica_sdk.manifest import Manifest, load_manifest
from tests.events.conftest import eventually, new_plugin_id
from tests.harness import servers

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
CRM = load_manifest(PLUGINS / "crm")
BILLING = load_manifest(PLUGINS / "billing")


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    admin_login: KafkaLogin

    @property
    def admin(self) -> BrokerAdmin:
        return BrokerAdmin(self.bootstrap, self.admin_login)

    @property
    def platform_login(self) -> KafkaLogin:
        # The same for every worker of the session: each may (re)grant it without a race.
        return KafkaLogin(PLATFORM_PRINCIPAL, broker_password(self.admin_login.password))


@pytest.fixture(scope="session")
def sasl() -> Broker:
    info = servers.ensure("kafka-sasl")
    return Broker(str(info["bootstrap"]), KafkaLogin(info["username"], info["password"]))


@pytest.fixture(scope="session")
async def platform(sasl: Broker) -> KafkaLogin:
    """The platform's principal as the grants job makes it (ADR 0253)."""
    await grant_platform(sasl.admin, sasl.platform_login)
    return sasl.platform_login


def types(manifest: Manifest) -> tuple[list[str], list[str]]:
    return [e.type for e in manifest.events.consumes], [e.type for e in manifest.events.emits]


async def grant_like(sasl: Broker, manifest: Manifest) -> tuple[str, PluginAccess]:
    """A principal with the grants of ``manifest``, under an id of this test's own (the broker
    is shared by the session's workers; the shipped ids belong to the topology test)."""
    plugin_id = f"{manifest.id}{uuid.uuid4().hex[:8]}"
    consumes, emits = types(manifest)
    return plugin_id, await grant_plugin(sasl.admin, plugin_id, "db-password", consumes, emits)


async def until(check: Callable[[], Awaitable[object]], timeout: float = 30.0) -> None:
    """Grants reach the broker's authorizer through its metadata log, a moment after the
    admin call returns: retry until the call is allowed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await check()
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def produce(sasl: Broker, login: KafkaLogin, topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=sasl.bootstrap, request_timeout_ms=5000, **login.aiokafka()
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"probe")
    finally:
        await producer.stop()


async def consume(sasl: Broker, login: KafkaLogin, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=sasl.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        **login.aiokafka(),
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=500)
        await consumer.commit()
    finally:
        await consumer.stop()


def test_the_grants_of_the_shipped_plugins_follow_their_manifests() -> None:
    assert plugin_grants("billing", *types(BILLING)) == {
        Grant(Resource.TOPIC, "crm.deal", Operation.READ),
        Grant(Resource.GROUP, "plexica.plugin.billing", Operation.READ),
        Grant(Resource.TOPIC, DEAD_LETTER_TOPIC, Operation.WRITE),
        *(
            Grant(Resource.TOPIC, f"billing.{family}", Operation.WRITE)
            for family in ("customer", "plan", "invoice", "subscription", "credit_note")
        ),
    }
    crm = plugin_grants("crm", *types(CRM))
    assert {g for g in crm if g.operation is Operation.READ} == {
        Grant(Resource.TOPIC, "plexica.tenant", Operation.READ),
        Grant(Resource.GROUP, "plexica.plugin.crm", Operation.READ),
    }
    assert not [g for g in crm if g.resource is Resource.TOPIC and g.name.startswith("billing.")]
    # A plugin that consumes nothing has no group and writes no dead letters.
    assert plugin_grants("quiet", [], ["quiet.thing.done"]) == {
        Grant(Resource.TOPIC, "quiet.thing", Operation.WRITE)
    }


async def test_the_crm_principal_cannot_consume_a_billing_topic(sasl: Broker) -> None:
    _, billing = await grant_like(sasl, BILLING)  # makes billing.invoice
    crm_id, crm = await grant_like(sasl, CRM)
    # Its own grants are in force (it consumes plexica.tenant with its group) ...
    await until(lambda: consume(sasl, crm.login, "plexica.tenant", consumer_group(crm_id)))
    # ... and a Billing-only topic is refused, with its own group or Billing's.
    with pytest.raises(TopicAuthorizationFailedError):
        await consume(sasl, crm.login, "billing.invoice", consumer_group(crm_id))
    billing_group = next(g.name for g in billing.grants if g.resource is Resource.GROUP)
    with pytest.raises(GroupAuthorizationFailedError):
        await consume(sasl, crm.login, "plexica.tenant", billing_group)


async def test_a_plugin_cannot_produce_to_another_plugins_topic(sasl: Broker) -> None:
    await grant_like(sasl, BILLING)
    _, crm = await grant_like(sasl, CRM)
    await until(lambda: produce(sasl, crm.login, "crm.deal"))
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(sasl, crm.login, "billing.invoice")
    # Nor to the core's families, nor make a topic of its own choosing.
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(sasl, crm.login, "plexica.tenant")
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(sasl, crm.login, f"crm.new{uuid.uuid4().hex[:6]}")


async def test_the_platform_principal_relays_but_administers_nothing(
    sasl: Broker, platform: KafkaLogin
) -> None:
    """Core and worker hold it (ADR 0253): a family nobody granted yet is made and written; no
    credential, no ACL and no cluster setting can be changed or even read with it."""
    topic = f"{new_plugin_id()}.thing"
    await until(lambda: ensure_topics(sasl.bootstrap, {topic}, 1, login=platform))
    await until(lambda: produce(sasl, platform, topic))
    await until(lambda: consume(sasl, platform, topic, consumer_group("someplugin")))
    as_platform = BrokerAdmin(sasl.bootstrap, platform)
    forged = Grant(Resource.TOPIC, "billing.invoice", Operation.READ)
    client = AdminClient({"bootstrap.servers": sasl.bootstrap, **platform.librdkafka()})
    [creating] = client.create_acls([acl_binding("plexica-plugin-crm", forged)]).values()
    for attempt in (
        as_platform.set_password(platform.username, "its-own-choice"),
        as_platform.set_password(sasl.admin_login.username, "taken-over"),
        asyncio.wait_for(asyncio.wrap_future(creating), as_platform.timeout),
    ):
        with pytest.raises((KafkaException, TimeoutError)):  # refused (or never answered)
            await attempt
    # ... and nothing changed: both logins work with their passwords, no ACL was made.
    await until(lambda: produce(sasl, platform, topic))
    await until(lambda: produce(sasl, sasl.admin_login, topic))
    assert forged not in await sasl.admin.grants("plexica-plugin-crm")
    # The ACLs are hidden from it (the administrator sees its five).
    assert await as_platform.grants(PLATFORM_PRINCIPAL) == frozenset()
    assert len(await sasl.admin.grants(PLATFORM_PRINCIPAL)) == 5
    # Its own groups only: not a group a plugin might use under another name.
    with pytest.raises(GroupAuthorizationFailedError):
        await consume(sasl, platform, topic, "another-group")


async def test_a_wrong_password_is_refused(sasl: Broker) -> None:
    _, crm = await grant_like(sasl, CRM)
    await until(lambda: produce(sasl, crm.login, "crm.deal"))
    with pytest.raises(KafkaError):
        await produce(sasl, KafkaLogin(crm.login.username, "not-its-password"), "crm.deal")


@pytest.fixture
async def plugin_db() -> AsyncIterator[list[Database]]:
    opened: list[Database] = []
    yield opened
    for database in opened:
        await database.dispose()


async def test_billing_reads_crm_deal_won_on_its_own_login(
    db: Database, sasl: Broker, platform: KafkaLogin, database_url: str, plugin_db: list[Database]
) -> None:
    """The whole path: the platform relays on its own principal, no super user (ADR 0253); a
    Billing-like plugin's consumer, on its own database login and its own broker principal,
    gets the event."""
    tenant = uuid.uuid4()
    bus = EventBus(f"billing{uuid.uuid4().hex[:8]}")
    received: list[Event] = []

    @bus.subscribe("crm.deal.won")
    async def record(event: Event) -> None:
        received.append(event)

    async with db.session() as s:
        await service.register_subscriptions(s, bus.plugin_id, ["crm.deal.won"])
        await service.set_plugin_active(s, bus.plugin_id, tenant, True)
        login = await plugins_service.ensure_login(s, bus.plugin_id)
    password = login.password.get_secret_value()
    access = await grant_plugin(
        sasl.admin, bus.plugin_id, password, ["crm.deal.won"], ["unused.thing.done"]
    )
    assert access.login.password == broker_password(password) != password
    own = Database(asyncpg_url(login.database_url(database_url)), pool_size=2)
    plugin_db.append(own)
    consumer = EventRuntime.for_plugin_login(
        own, bus, kafka_brokers=sasl.bootstrap, kafka_login=access.login
    )
    relay = EventRuntime(db, {}, kafka_brokers=sasl.bootstrap, kafka_login=platform)
    async with consumer, relay:
        await asyncio.wait_for(consumer.ready(), 60)
        async with db.session() as s:
            won = await service.publish(s, "crm.deal.won", {"deal_id": "d1"}, tenant_id=tenant)
        await eventually(lambda: won.id in [e.id for e in received], timeout=60)


async def test_the_acls_follow_the_catalog(db: Database, sasl: Broker) -> None:
    """Registered versions add what they consume; a deprecated one's grants go away."""
    plugin_id = new_plugin_id()
    consumed = f"{new_plugin_id()}.order.placed"
    doc = {
        "id": plugin_id, "name": "Acl", "version": "1.0.0", "publisher": "Tests",
        "core": ">=0.1.0 <1.0.0",
        "events": {"consumes": [{"type": consumed}], "emits": [{"type": f"{plugin_id}.x.done"}]},
    }  # fmt: skip
    async with db.session() as s:
        await plugins_service.register(s, doc, [])
    async with db.session() as s:
        access = await broker.sync_plugin(s, sasl.admin, plugin_id)
    topic = consumed.rsplit(".", 1)[0]
    assert Grant(Resource.TOPIC, topic, Operation.READ) in access.grants
    await until(lambda: consume(sasl, access.login, topic, consumer_group(plugin_id)))

    async with db.session() as s:
        await plugins_service.set_status(s, plugin_id, "1.0.0", VersionStatus.DEPRECATED)
    done = await broker.reconcile(db, sasl.admin)
    assert done[plugin_id].grants == frozenset()

    async def refused() -> bool:
        try:
            await consume(sasl, access.login, topic, consumer_group(plugin_id))
        except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
            return True
        return False

    await eventually(refused, timeout=30)


async def test_plugin_credentials_prints_the_broker_login_and_grants_it(
    db: Database, sasl: Broker, database_url: str
) -> None:
    """The operator's step (`plexica plugin credentials`) hands out both logins; the broker one
    works for what the manifest emits, and --rotate changes it with the database password."""
    plugin_id = new_plugin_id()
    doc = {
        "id": plugin_id, "name": "Cred", "version": "1.0.0", "publisher": "Tests",
        "core": ">=0.1.0 <1.0.0", "events": {"emits": [{"type": f"{plugin_id}.x.done"}]},
    }  # fmt: skip
    async with db.session() as s:
        await plugins_service.register(s, doc, [])
    platform = {
        "PLEXICA_DATABASE_URL": database_url,
        "PLEXICA_KAFKA_BROKERS": sasl.bootstrap,
        "PLEXICA_KAFKA_USERNAME": sasl.platform_login.username,
        "PLEXICA_KAFKA_PASSWORD": sasl.platform_login.password,
    }
    admin = platform | {
        "PLEXICA_KAFKA_ADMIN_USERNAME": sasl.admin_login.username,
        "PLEXICA_KAFKA_ADMIN_PASSWORD": sasl.admin_login.password,
    }

    def credentials(*extra: str, env: dict[str, str] = admin) -> dict[str, str]:
        out = subprocess.run(
            [sys.executable, "-m", "plexica.cli", "plugin", "credentials", plugin_id, "--json",
             *extra],
            env={k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")} | env,
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return dict(json.loads(out.stdout))

    # Where the core runs it (no administrator): the login is printed, the grants job makes it.
    printed = credentials(env=platform)
    assert printed["kafka_username"] == f"plexica-plugin-{plugin_id}"
    first = credentials()
    assert first["kafka_password"] == printed["kafka_password"]
    login = KafkaLogin(first["kafka_username"], first["kafka_password"])
    await until(lambda: produce(sasl, login, f"{plugin_id}.x"))
    rotated = credentials("--rotate")
    assert rotated["kafka_password"] != first["kafka_password"]

    async def old_refused() -> bool:
        try:
            await produce(sasl, login, f"{plugin_id}.x")
        except KafkaError:
            return True
        return False

    await eventually(old_refused, timeout=30)
    fresh = KafkaLogin(rotated["kafka_username"], rotated["kafka_password"])
    await until(lambda: produce(sasl, fresh, f"{plugin_id}.x"))


async def test_the_grants_job_makes_the_platform_principal_and_beats(
    sasl: Broker, database_url: str, tmp_path: Path
) -> None:
    """`plexica plugin broker-acls --watch` (Compose's broker-grants): the platform's principal
    it is given is made and granted, and the heartbeat is touched after each good pass."""
    login = KafkaLogin(f"plexica-platform-{uuid.uuid4().hex[:8]}", "its-password")
    heartbeat = tmp_path / "ok"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")} | {
        "PLEXICA_DATABASE_URL": database_url,
        "PLEXICA_KAFKA_BROKERS": sasl.bootstrap,
        "PLEXICA_KAFKA_USERNAME": login.username,
        "PLEXICA_KAFKA_PASSWORD": login.password,
        "PLEXICA_KAFKA_ADMIN_USERNAME": sasl.admin_login.username,
        "PLEXICA_KAFKA_ADMIN_PASSWORD": sasl.admin_login.password,
        "PLEXICA_BROKER_ACL_SECONDS": "0.5",
    }
    cmd = [sys.executable, "-m", "plexica.cli", "plugin", "broker-acls", "--watch"]
    job = subprocess.Popen([*cmd, "--heartbeat", str(heartbeat)], env=env)
    try:
        await eventually(heartbeat.exists, timeout=120)
        first = heartbeat.stat().st_mtime_ns
        await eventually(lambda: heartbeat.stat().st_mtime_ns > first, timeout=60)
        topic = f"{new_plugin_id()}.made"
        await until(lambda: ensure_topics(sasl.bootstrap, {topic}, 1, login=login))
        await until(lambda: produce(sasl, login, topic))
    finally:
        job.terminate()
        job.wait(timeout=30)
