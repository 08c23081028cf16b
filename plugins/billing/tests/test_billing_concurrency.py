"""Parallel requests at one invoice or customer (SDK concurrency kit, real PostgreSQL): paid +
credited never exceeds the total, an invoice is paid once, numbers stay gap-free, a deal is
invoiced once and a customer's changes apply in order, each event saying what it replaced."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_kit_helpers import count, deal_won, events, sequences

from plexica_billing.events import handle_deal_won
from plexica_sdk.db import PluginDatabase
from plexica_sdk.events import Event
from plexica_sdk.testing import KitTenant, PluginTestKit, race

PARALLEL, ROUNDS = 8, 20


@pytest.fixture(scope="module")
def tenant(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("billrace")


@pytest.fixture(scope="module")
def customer(kit: PluginTestKit, tenant: KitTenant) -> str:
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        r = http.post("/v1/customers", json={"name": "Racer", "currency": "EUR"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def _client(kit: PluginTestKit, tenant: KitTenant) -> httpx.Client:
    client = kit.client(tenant, roles=["tenant_admin"])
    client.timeout = httpx.Timeout(60)
    return client


def _draft(http: httpx.Client, customer: str) -> str:
    r = http.post(
        "/v1/invoices",
        json={"customer_id": customer, "lines": [{"description": "d", "unit_price": "100.00"}]},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_payments_and_credits_at_once_never_exceed_the_total(
    kit: PluginTestKit, tenant: KitTenant, customer: str
) -> None:
    with _client(kit, tenant) as http:

        def setup(_n: int) -> dict[str, Any]:
            invoice_id = _draft(http, customer)
            issued = http.post(f"/v1/invoices/{invoice_id}/issue")
            assert issued.status_code == 200, issued.text
            return dict(issued.json())

        def call(invoice: dict[str, Any], i: int) -> httpx.Response:
            url = f"/v1/invoices/{invoice['id']}"
            if i % 2:
                return http.post(f"{url}/payments", json={"amount": invoice["total"]})
            credit = str(Decimal(invoice["total"]) * Decimal("0.3"))[:-2]
            return http.post(f"{url}/credit-notes", json={"amount": credit, "reason": "race"})

        def check(invoice: dict[str, Any], answers: list[httpx.Response]) -> None:
            assert {r.status_code for r in answers} <= {201, 409, 422}, [r.text for r in answers]
            after = http.get(f"/v1/invoices/{invoice['id']}").json()
            payments = http.get(f"/v1/invoices/{invoice['id']}/payments").json()
            paid = sum((Decimal(p["amount"]) for p in payments), Decimal(0))
            assert len(payments) <= 1
            notes = [n for n in after["credit_notes"] if n["kind"] == "credit"]
            credited = sum((Decimal(n["amount"]) for n in notes), Decimal(0))
            assert paid + credited <= Decimal(after["total"])
            assert Decimal(after["credited"]) <= Decimal(after["total"])
            assert (after["status"] == "paid") == (paid + credited == Decimal(after["total"]))

        race(setup, call, check, parallel=PARALLEL, rounds=ROUNDS)
    notes = sequences(kit, tenant, "billing_credit_notes")
    assert notes == list(range(1, len(notes) + 1))


def test_drafts_issued_at_once_get_gap_free_numbers(
    kit: PluginTestKit, tenant: KitTenant, customer: str
) -> None:
    with _client(kit, tenant) as http:

        def setup(_n: int) -> list[str]:
            return [_draft(http, customer) for _ in range(PARALLEL)]

        def call(drafts: list[str], i: int) -> httpx.Response:
            return http.post(f"/v1/invoices/{drafts[i]}/issue")

        def check(_drafts: list[str], answers: list[httpx.Response]) -> None:
            assert [r.status_code for r in answers] == [200] * PARALLEL
            numbers = sequences(kit, tenant)
            assert numbers == list(range(1, len(numbers) + 1))

        race(setup, call, check, parallel=PARALLEL, rounds=ROUNDS)


def test_one_deal_won_delivered_many_times_at_once_is_invoiced_once(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    assert kit.database_url is not None
    database_url = kit.database_url

    def deliver(event: Event) -> bool:
        async def run() -> bool:
            db = PluginDatabase(database_url, "billing")
            try:
                return await handle_deal_won(db, event) is not None
            finally:
                await db.dispose()

        return asyncio.run(run())

    def setup(_n: int) -> uuid.UUID:
        return uuid.uuid4()

    def call(deal: uuid.UUID, i: int) -> bool:
        # Half the deals have no company: their customer is made by the handler, once.
        company = uuid.UUID(int=i % 2 + 1) if deal.int % 2 else None
        return deliver(
            deal_won(tenant, deal, company, "10.00", company_name="Initrode", title="race")
        )

    def check(deal: uuid.UUID, answers: list[bool]) -> None:
        assert all(answers)
        rows = asyncio.run(
            kit.fetch(
                f'SELECT count(*) AS n FROM "{tenant.schema}".billing_invoices'
                " WHERE crm_deal_id = $1",
                deal,
            )
        )
        assert rows[0]["n"] == 1

    before = count(kit, tenant, "billing_customers")
    race(setup, call, check, parallel=PARALLEL, rounds=ROUNDS)
    without_company = asyncio.run(
        kit.fetch(f'SELECT count(*) AS n FROM "{tenant.schema}".billing_customers'
                  " WHERE crm_company_id IS NULL AND name = 'Initrode'")
    )[0]["n"]  # fmt: skip
    assert count(kit, tenant, "billing_customers") - before == without_company + 2


def test_parallel_changes_of_one_customer_apply_in_order_and_their_events_chain(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    with _client(kit, tenant) as http:

        def setup(n: int) -> dict[str, Any]:
            r = http.post("/v1/customers", json={"name": f"Round {n}", "currency": "EUR"})
            assert r.status_code == 201, r.text
            return dict(r.json())

        def call(customer: dict[str, Any], i: int) -> httpx.Response:
            body: dict[str, Any] = {"name": f"{customer['name']} by {i}"}
            if i % 2:
                body["email"] = f"u{i}@example.com"
            return http.patch(f"/v1/customers/{customer['id']}", json=body)

        def check(customer: dict[str, Any], answers: list[httpx.Response]) -> None:
            assert [r.status_code for r in answers] == [200] * PARALLEL, [r.text for r in answers]
            subject = f"customers/{customer['id']}"
            changes = [
                e["changes"] for e in events(kit, tenant, "billing.customer.updated", subject)
            ]
            names = [c["name"] for c in changes]
            # Every change renamed it: one event each, each leaving the name the last one set.
            assert len(names) == PARALLEL
            assert names[0]["from"] == customer["name"]
            for before, after in itertools.pairwise(names):
                assert after["from"] == before["to"]
            assert {n["to"] for n in names} == {
                f"{customer['name']} by {i}" for i in range(PARALLEL)
            }
            emails = [c["email"] for c in changes if "email" in c]
            for before, after in itertools.pairwise(emails):
                assert after["from"] == before["to"]
            final = http.get(f"/v1/customers/{customer['id']}").json()
            assert final["name"] == names[-1]["to"]
            assert final["email"] == (emails[-1]["to"] if emails else None)

        race(setup, call, check, parallel=PARALLEL, rounds=ROUNDS)
