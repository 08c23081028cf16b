"""Events a third party can build on (ADR 0182-0184): a consumer of its own reads a tenant's
records from the real Kafka broker, fetches each record's ``dataschema`` from the platform and
validates the record's data against it; ``time`` never goes back for the tenant's key and the
CRM's events are in the trace of the request that made them."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from jsonschema import Draft202012Validator
from sqlalchemy import text

from plexica.events.catalog import schema_base
from plexica.events.relay import KafkaSink, Relay
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica_sdk.manifest import Manifest
from tests.events.conftest import eventually
from tests.harness import servers
from tests.plugins.conftest import Platform, TenantFactory

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def kafka() -> str:
    return str(servers.ensure("kafka")["bootstrap"])


async def _drain(db: Database, kafka: str, base: str) -> None:
    """The worker's relay, until the outbox has nothing pending."""
    sink = KafkaSink(kafka)
    relay = Relay(db, sink, schema_base=base)

    async def drained() -> bool:
        await relay.step()
        async with db.session() as s:
            pending = await s.execute(
                text("SELECT count(*) FROM platform.outbox WHERE published_at IS NULL")
            )
            return int(pending.scalar_one()) == 0

    try:
        await eventually(drained, timeout=60)
    finally:
        await sink.close()


async def _records_of(kafka: str, topics: set[str], key: bytes, expect: int) -> list[Any]:
    """The key's records of ``topics`` from the beginning, as an outside consumer reads them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        tps: list[TopicPartition] = []

        async def known() -> bool:
            await consumer._client.force_metadata_update()
            return all(consumer.partitions_for_topic(t) for t in topics)

        await eventually(known, timeout=30)
        for topic in sorted(topics):
            parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = asyncio.get_running_loop().time() + 60
        while len(found) < expect:
            assert asyncio.get_running_loop().time() < deadline, f"{len(found)} of {expect}"
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found += [r for r in records if r.key == key]
    finally:
        await consumer.stop()
    return found


async def test_an_outside_consumer_validates_every_record_against_its_dataschema(
    platform: Platform,
    settings: Settings,
    db: Database,
    kafka: str,
    crm_manifest: Manifest,
    make_tenant: TenantFactory,
) -> None:
    tenant = await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    http = platform.http
    r = await http.post(
        f"{CORE}/tenants/{tenant.id}/plugins", json={"plugin_id": "crm"}, headers=admin
    )
    assert r.status_code == 201, r.text
    traced = admin | {"X-Trace-ID": TRACE_ID}
    company = await http.post(f"{CRM}/companies", json={"name": "Umbrella"}, headers=traced)
    assert company.status_code == 201, company.text
    deal = await http.post(
        f"{CRM}/deals",
        json={"title": "Pilot", "amount": "4200.00", "company_id": company.json()["id"]},
        headers=traced,
    )
    assert deal.status_code == 201, deal.text
    moves = await asyncio.gather(
        *(
            http.post(
                f"{CRM}/deals/{deal.json()['id']}/stage", json={"stage_id": stage}, headers=traced
            )
            for stage in ("qualified", "proposal", "won", "proposal", "won", "qualified")
        )
    )
    assert all(m.status_code == 200 for m in moves), [m.text for m in moves]
    installed = f"{CORE}/tenants/{tenant.id}/plugins/crm"
    for step in ("disable", "enable"):
        r = await http.post(f"{installed}/{step}", headers=admin)
        assert r.status_code == 200, r.text
    r = await http.delete(installed, headers=admin)
    assert r.status_code in {200, 204}, r.text

    async with db.session() as s:
        rows = (
            await s.execute(
                text("SELECT type, source FROM platform.outbox WHERE tenant_id = :t ORDER BY seq"),
                {"t": tenant.id},
            )
        ).all()
    assert {row.source for row in rows} == {"/plexica/core", "/plugins/crm"}
    base = schema_base(settings)
    await _drain(db, kafka, base)

    records = await _records_of(
        kafka, {"plexica.plugin", "crm.company", "crm.deal"}, str(tenant.id).encode(), len(rows)
    )
    assert sorted(dict(r.headers)["ce_type"].decode() for r in records) == sorted(
        row.type for row in rows
    )
    await _validate(http, records, base)
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        if headers["ce_source"] == "/plugins/crm":
            assert headers["ce_traceparent"].startswith(f"00-{TRACE_ID}-"), headers
    _time_never_goes_back(records)


def _time_never_goes_back(records: list[Any]) -> None:
    """One key, one partition per topic: in each topic's order, time never goes back."""
    by_topic: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: (r.topic, r.offset)):
        by_topic.setdefault(record.topic, []).append(dict(record.headers)["ce_time"].decode())
    for topic, times in by_topic.items():
        parsed = [datetime.fromisoformat(t) for t in times]
        assert parsed == sorted(parsed), topic


async def _validate(http: httpx.AsyncClient, records: list[Any], base: str) -> None:
    """Each record's data against the schema its dataschema names, fetched from the platform
    without a token (the client sends any URL to the edge in-process)."""
    schemas: dict[str, Draft202012Validator] = {}
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        uri = headers["ce_dataschema"]
        assert uri.startswith(base + "/v1/events/schemas/" + headers["ce_type"] + "/")
        if uri not in schemas:
            fetched = await http.get(uri)
            assert fetched.status_code == 200, fetched.text
            assert fetched.headers["content-type"].startswith("application/schema+json")
            document = fetched.json()
            assert document["$id"] == uri
            Draft202012Validator.check_schema(document)
            schemas[uri] = Draft202012Validator(
                document, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        errors = list(schemas[uri].iter_errors(json.loads(record.value)))
        assert not errors, (headers["ce_type"], errors)


async def _tenant_rows(db: Database, tenant_id: uuid.UUID) -> list[Any]:
    async with db.session() as s:
        result = await s.execute(
            text(
                "SELECT type, source, published_at FROM platform.outbox"
                " WHERE tenant_id = :t ORDER BY seq"
            ),
            {"t": tenant_id},
        )
        return list(result.all())


async def test_an_unknown_schema_is_a_404_in_the_error_shape(platform: Platform) -> None:
    r = await platform.http.get(f"{CORE}/events/schemas/crm.deal.won/99")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "event_schema_not_found"
    core = await platform.http.get(f"{CORE}/events/schemas/plexica.tenant.provisioned/1")
    assert core.status_code == 200
    assert core.json()["required"] == ["id", "slug", "name", "state", "schema_version"]
