"""Events a third party can build on (ADR 0182-0184): a consumer of its own reads a tenant's
records from the real Kafka broker, fetches each record's ``dataschema`` from the platform and
validates the record's data against it; ``time`` never goes back for the tenant's key and the
plugins' events (CRM, Billing) are in the trace of the request that made them."""

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
from plexica_sdk.events import event_family
from plexica_sdk.manifest import Manifest
from tests.events.conftest import eventually
from tests.harness import servers
from tests.plugins.conftest import Platform, TenantFactory

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"
BILLING = "/api/plugins/billing/v1"
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
    await _change_and_delete(http, traced, company.json()["id"], deal.json()["id"])
    installed = f"{CORE}/tenants/{tenant.id}/plugins/crm"
    for step in ("disable", "enable"):
        r = await http.post(f"{installed}/{step}", headers=admin)
        assert r.status_code == 200, r.text
    r = await http.delete(installed, headers=admin)
    assert r.status_code in {200, 204}, r.text

    records = await _read_as_an_outside_consumer(
        http, settings, db, kafka, tenant.id, {"/plexica/core", "/plugins/crm"}
    )
    seen = {dict(r.headers)["ce_type"].decode() for r in records}
    kinds = ("company", "contact", "deal")
    assert {f"crm.{k}.{w}" for k in kinds for w in ("updated", "deleted")} <= seen


async def test_an_outside_consumer_validates_every_billing_event_type(
    billing_platform: Platform,
    settings: Settings,
    db: Database,
    kafka: str,
    billing_manifest: Manifest,
    make_tenant: TenantFactory,
) -> None:
    """Every type Billing declares, made through its API. All of them can be: the CRM's won
    deal is only another way to a created invoice, the hourly job another way to the invoice
    run."""
    tenant = await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    http = billing_platform.http
    r = await http.post(
        f"{CORE}/tenants/{tenant.id}/plugins", json={"plugin_id": "billing"}, headers=admin
    )
    assert r.status_code == 201, r.text
    billing = _Client(http, admin | {"X-Trace-ID": TRACE_ID})

    acme, globex = await asyncio.gather(
        billing.post("/customers", {"name": "Acme", "currency": "EUR"}),
        billing.post("/customers", {"name": "Globex", "crm_company_id": str(uuid.uuid4())}),
    )
    basic, pro, seats = await asyncio.gather(
        billing.post("/plans", {"code": "basic", "name": "Basic", "price": "10.00"}),
        billing.post("/plans", {"code": "pro", "name": "Pro", "price": "30.00"}),
        billing.post(
            "/plans",
            {"code": "seats", "name": "Seats", "pricing": "per_seat", "price": "5.00"},
        ),
    )
    # Fixed days: the run below finds the same periods whatever today is.
    start = "2026-01-05"
    upgraded, trial, canceled = await asyncio.gather(
        billing.post(
            "/subscriptions", {"customer_id": acme["id"], "plan_id": basic["id"], "start": start}
        ),
        billing.post(
            "/subscriptions",
            {"customer_id": acme["id"], "plan_id": seats["id"], "start": start, "trial_days": 7},
        ),
        billing.post(
            "/subscriptions",
            {"customer_id": globex["id"], "plan_id": basic["id"], "start": start},
        ),
    )
    await asyncio.gather(
        # Prorated: the change event carries a credit and a charge.
        billing.patch(
            f"/subscriptions/{upgraded['id']}",
            {"plan_id": pro["id"], "effective": "2026-01-20"},
        ),
        billing.patch(f"/subscriptions/{trial['id']}", {"quantity": 3}),
        billing.patch(f"/subscriptions/{canceled['id']}", {"status": "canceled"}),
    )
    run = await billing.post("/invoice-runs", {"as_of": "2026-02-05"}, status=200)
    # The upgraded subscription's first period, with its proration; the trial only ends.
    assert run["issued"] == 1, run

    lines = [{"description": "Consulting", "quantity": "2", "unit_price": "150.00"}]
    paid, credited, voided = await asyncio.gather(
        *(billing.post("/invoices", {"customer_id": acme["id"], "lines": lines}) for _ in range(3))
    )
    await billing.post(f"/invoices/{paid['id']}/lines", [lines[0]], status=200)
    for invoice in (paid, credited):
        issued = await billing.post(f"/invoices/{invoice['id']}/issue", None, status=200)
        invoice["amount_due"] = issued["amount_due"]
    await billing.post(f"/invoices/{paid['id']}/payments", {"amount": paid["amount_due"]})
    await asyncio.gather(
        billing.post(
            f"/invoices/{paid['id']}/credit-notes", {"amount": "50.00", "reason": "Goodwill"}
        ),
        billing.post(
            f"/invoices/{credited['id']}/credit-notes", {"amount": "100.00", "reason": "Late"}
        ),
        billing.post(f"/invoices/{voided['id']}/void", None, status=200),
    )
    await billing.post(f"/invoices/{credited['id']}/uncollectible", None, status=200)

    # Changes (each field from/to), and deletes of a customer and a plan nothing uses.
    spare, unused = await asyncio.gather(
        billing.post("/customers", {"name": "Initech", "currency": "EUR"}),
        billing.post("/plans", {"code": "spare", "name": "Spare", "price": "1.00"}),
    )
    await asyncio.gather(
        billing.patch(
            f"/customers/{globex['id']}",
            {"name": "Globex Corporation", "email": "hank@globex.example", "crm_company_id": None},
        ),
        billing.patch(f"/plans/{pro['id']}", {"name": "Pro+", "price": "35.00"}),
    )
    for path in (f"/customers/{spare['id']}", f"/plans/{unused['id']}"):
        r = await http.delete(BILLING + path, headers=billing.headers)
        assert r.status_code == 204, r.text

    records = await _read_as_an_outside_consumer(
        http, settings, db, kafka, tenant.id, {"/plexica/core", "/plugins/billing"}
    )
    seen = {dict(r.headers)["ce_type"].decode() for r in records}
    assert {t for t in seen if t.startswith("billing.")} == {
        e.type for e in billing_manifest.events.emits
    }
    changes = {
        json.loads(r.value)["change"]
        for r in records
        if dict(r.headers)["ce_type"] == b"billing.subscription.changed"
    }
    assert changes == {"created", "updated", "plan_changed", "canceled", "trial_ended"}


class _Client:
    """Billing's JSON API as one user, in one trace."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers

    async def post(self, path: str, body: object, status: int = 201) -> Any:
        r = await self.http.post(BILLING + path, json=body, headers=self.headers)
        assert r.status_code == status, r.text
        return r.json()

    async def patch(self, path: str, body: object) -> Any:
        r = await self.http.patch(BILLING + path, json=body, headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()


async def _read_as_an_outside_consumer(
    http: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    kafka: str,
    tenant_id: uuid.UUID,
    sources: set[str],
) -> list[Any]:
    """The tenant's outbox relayed to Kafka and read back from its topics: one record per
    event, each valid against its dataschema, plugin events in the requests' trace and time
    never going back per topic."""
    rows = await _tenant_rows(db, tenant_id)
    assert {row.source for row in rows} == sources
    base = schema_base(settings)
    await _drain(db, kafka, base)

    topics = {event_family(row.type) for row in rows}
    records = await _records_of(kafka, topics, str(tenant_id).encode(), len(rows))
    assert sorted(dict(r.headers)["ce_type"].decode() for r in records) == sorted(
        row.type for row in rows
    )
    await _validate(http, records, base)
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        if headers["ce_source"].startswith("/plugins/"):
            assert headers["ce_traceparent"].startswith(f"00-{TRACE_ID}-"), headers
    _time_never_goes_back(records)
    return records


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


async def _change_and_delete(
    http: httpx.AsyncClient, headers: dict[str, str], company_id: str, deal_id: str
) -> None:
    """Every CRM record changed, then deleted: the updated and deleted event types."""
    contact = await http.post(
        f"{CRM}/contacts", json={"first_name": "Alice", "company_id": company_id}, headers=headers
    )
    assert contact.status_code == 201, contact.text
    contact_path = f"{CRM}/contacts/{contact.json()['id']}"
    changes = await asyncio.gather(
        http.patch(
            f"{CRM}/companies/{company_id}", json={"domain": "umbrella.test"}, headers=headers
        ),
        http.patch(contact_path, json={"email": "alice@umbrella.test"}, headers=headers),
        http.patch(
            f"{CRM}/deals/{deal_id}",
            json={"amount": "4300.00", "contact_id": contact.json()["id"]},
            headers=headers,
        ),
    )
    assert all(r.status_code == 200 for r in changes), [r.text for r in changes]
    for path in (f"{CRM}/deals/{deal_id}", contact_path, f"{CRM}/companies/{company_id}"):
        r = await http.delete(path, headers=headers)
        assert r.status_code == 204, r.text
