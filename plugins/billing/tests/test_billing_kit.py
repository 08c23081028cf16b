"""Billing through the SDK test kit: a real local Plexica (its CLI) and a real PostgreSQL, the
plugin served over HTTP, callers with real tokens. Imports only the SDK and the plugin."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_kit_helpers import count, deal_won, error_code, sequences, subscribe

from plexica_billing.events import handle_deal_won
from plexica_sdk.db import PluginDatabase
from plexica_sdk.events import Event, InvalidEventError
from plexica_sdk.testing import KitTenant, PluginTestKit


@pytest.fixture(scope="module")
def acme(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("acme")


def test_invoice_lifecycle_and_bad_input(kit: PluginTestKit, acme: KitTenant) -> None:
    with kit.client(acme, roles=["tenant_admin"], sub="ann") as http:
        customer = http.post("/v1/customers", json={"name": "Initech", "currency": "usd"})
        assert customer.status_code == 201, customer.text
        assert customer.json()["currency"] == "USD"
        cid = customer.json()["id"]
        before = count(kit, acme, "billing_invoices")
        bad: list[tuple[dict[str, Any], str]] = [
            ({"customer_id": cid, "lines": [{"description": "x", "unit_price": "-1"}]}, "validation_error"),
            ({"customer_id": cid, "lines": [{"description": "x", "unit_price": "ten"}]}, "validation_error"),
            ({"customer_id": cid, "lines": [{"description": "x", "unit_price": "NaN"}]}, "validation_error"),
            ({"customer_id": cid, "currency": "XYZ", "lines": []}, "unknown_currency"),
            (
                {"customer_id": cid, "lines": [
                    {"description": "a", "unit_price": "1"},
                    {"description": "b", "unit_price": "1", "currency": "EUR"},
                ]},
                "currency_mismatch",
            ),
            ({"customer_id": str(uuid.uuid4()), "lines": []}, "unknown_reference"),
        ]  # fmt: skip
        for body, code in bad:
            assert error_code(http.post("/v1/invoices", json=body), 422) == code, body
        assert count(kit, acme, "billing_invoices") == before
        assert count(kit, acme, "billing_invoice_lines") == 0

        draft = http.post(
            "/v1/invoices",
            json={
                "customer_id": cid,
                "lines": [
                    {"description": "Consulting", "quantity": "3", "unit_price": "33.33",
                     "tax_rate": "20"},
                    {"description": "Setup", "unit_price": "0.05", "tax_rate": "7.5"},
                ],
            },
        )  # fmt: skip
        assert draft.status_code == 201, draft.text
        inv = draft.json()
        # 99.99 + 0.05 net; tax 20.00 (19.998) + 0.00 (0.00375), rounded per line.
        assert (inv["subtotal"], inv["tax"], inv["total"]) == ("100.04", "20.00", "120.04")
        assert inv["status"] == "draft"
        assert inv["number"] is None
        r = http.post(f"/v1/invoices/{inv['id']}/payments", json={"amount": "120.04"})
        assert error_code(r, 409) == "invalid_invoice_state"
        issued = http.post(f"/v1/invoices/{inv['id']}/issue").json()
        assert issued["status"] == "open"
        assert issued["number"].startswith("INV-")
        assert (
            error_code(http.post(f"/v1/invoices/{inv['id']}/issue"), 409) == "invalid_invoice_state"
        )
        more = http.post(
            f"/v1/invoices/{inv['id']}/lines", json=[{"description": "x", "unit_price": "1"}]
        )
        assert error_code(more, 409) == "invalid_invoice_state"
        for body, status, code in [
            ({"amount": "-120.04"}, 422, "validation_error"),
            ({"amount": "abc"}, 422, "validation_error"),
            ({"amount": "120.00"}, 422, "invalid_amount"),
            ({"amount": "120.04", "currency": "EUR"}, 422, "currency_mismatch"),
            ({"amount": "120.04", "currency": "ZZZ"}, 422, "unknown_currency"),
            ({"amount": "120.04", "provider": "stripe"}, 422, "unknown_payment_provider"),
        ]:
            r = http.post(f"/v1/invoices/{inv['id']}/payments", json=body)
            assert error_code(r, status) == code, body
        assert count(kit, acme, "billing_payments") == 0
        paid = http.post(
            f"/v1/invoices/{inv['id']}/payments",
            json={"amount": "120.04", "provider": "bank_transfer", "reference": "SEPA-1"},
        )
        assert paid.status_code == 201, paid.text
        again = http.post(f"/v1/invoices/{inv['id']}/payments", json={"amount": "120.04"})
        assert error_code(again, 409) == "invoice_already_paid"
        assert len(http.get(f"/v1/invoices/{inv['id']}/payments").json()) == 1
        assert http.get(f"/v1/invoices/{inv['id']}").json()["status"] == "paid"
        assert (
            error_code(http.post(f"/v1/invoices/{inv['id']}/void"), 409) == "invalid_invoice_state"
        )

        other = http.post(
            "/v1/invoices",
            json={"customer_id": cid, "lines": [{"description": "y", "unit_price": "5"}]},
        ).json()
        assert http.post(f"/v1/invoices/{other['id']}/void").json()["status"] == "void"
        r = http.post(f"/v1/invoices/{other['id']}/payments", json={"amount": "5.00"})
        assert error_code(r, 409) == "invalid_invoice_state"

        twice = http.post(
            "/v1/invoices",
            json={"customer_id": cid, "lines": [{"description": "z", "unit_price": "7"}]},
        ).json()
        http.post(f"/v1/invoices/{twice['id']}/issue").raise_for_status()

        def pay(_: int) -> int:
            with kit.client(acme, roles=["tenant_admin"]) as c:
                return c.post(
                    f"/v1/invoices/{twice['id']}/payments", json={"amount": "7.00"}
                ).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert sorted(pool.map(pay, range(4))) == [201, 409, 409, 409]
        assert len(http.get(f"/v1/invoices/{twice['id']}/payments").json()) == 1

        assert http.get("/v1/invoices?status=paid").json()["total"] == 2
        assert http.get("/v1/invoices?status=void&limit=1").json()["items"][0]["id"] == other["id"]
        assert issued["number"] in http.get("/ui/invoices").text
        pdf = http.get(f"/v1/invoices/{inv['id']}/pdf")
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-")
        assert issued["number"] in pdf.headers["content-disposition"]
        page = http.get(f"/ui/invoices/{inv['id']}").text
        assert "Initech" in page
        assert "120.04 USD" in page

    rows = asyncio.run(
        kit.fetch(
            "SELECT type, data FROM platform.outbox WHERE tenant_id = $1"
            " AND source = '/plugins/billing' ORDER BY seq",
            acme.id,
        )
    )
    assert [r["type"] for r in rows if r["type"].endswith((".issued", ".paid"))] == [
        "billing.invoice.issued",
        "billing.invoice.paid",
        "billing.invoice.issued",
        "billing.invoice.paid",
    ]


async def _deliver(kit: PluginTestKit, *events: Event) -> list[Any]:
    assert kit.database_url is not None
    db = PluginDatabase(kit.database_url, "billing")
    try:
        return [await handle_deal_won(db, e) for e in events]
    finally:
        await db.dispose()


def test_deal_won_creates_customer_and_one_draft(kit: PluginTestKit) -> None:
    tenant = kit.tenant("dealco")
    deal, company = uuid.uuid4(), uuid.uuid4()
    won = deal_won(tenant, deal, company, "1500.5")
    again = deal_won(tenant, deal, company, "1500.5")  # same deal, a new event id
    results = asyncio.run(_deliver(kit, won, won, again))
    assert results[0] is not None
    assert results[1] is None  # redelivery: nothing done
    assert results[2].id == results[0].id
    assert count(kit, tenant, "billing_customers") == 1
    assert count(kit, tenant, "billing_invoices") == 1
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        drafts = http.get("/v1/invoices?status=draft").json()
        assert drafts["total"] == 1
        inv = drafts["items"][0]
        assert (inv["total"], inv["currency"], inv["crm_deal_id"]) == ("1500.50", "EUR", str(deal))
        customer = http.get(f"/v1/customers/{inv['customer_id']}").json()
        assert (customer["name"], customer["crm_company_id"]) == ("Globex", str(company))
        issued = http.post(f"/v1/invoices/{inv['id']}/issue").json()
        paid = http.post(f"/v1/invoices/{inv['id']}/payments", json={"amount": issued["total"]})
        assert paid.status_code == 201, paid.text
    bad = deal_won(tenant, uuid.uuid4(), company, "-3")
    with pytest.raises(InvalidEventError, match="greater than or equal to 0"):
        asyncio.run(_deliver(kit, bad))
    assert count(kit, tenant, "billing_invoices") == 1
    assert count(kit, tenant, "billing_processed_events") == 2  # the failed one stays pending


def _subscribe(http: httpx.Client, plan: str, n: int, quantity: int = 1) -> list[str]:
    customer = http.post("/v1/customers", json={"name": "Hooli", "currency": "EUR"}).json()
    return [subscribe(http, customer["id"], plan, quantity) for _ in range(n)]


def test_concurrent_invoice_runs_bill_once_with_gap_free_numbers(kit: PluginTestKit) -> None:
    tenant = kit.tenant("runco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        seat = http.post(
            "/v1/plans",
            json={"code": "team", "name": "Team", "pricing": "per_seat", "price": "10.00",
                  "tax_rate": "19"},
        )  # fmt: skip
        assert seat.status_code == 201, seat.text
        dup = http.post("/v1/plans", json={"code": "team", "name": "x", "price": "1"})
        assert error_code(dup, 409) == "already_exists"
        yearly = http.post(
            "/v1/plans",
            json={"code": "pro-year", "name": "Pro", "billing_interval": "year", "price": "1200"},
        ).json()
        subs = _subscribe(http, seat.json()["id"], 24, quantity=3)
        _subscribe(http, yearly["id"], 1)
        drafts = [
            http.post("/v1/invoices", json={"customer_id": http.get("/v1/customers").json()["items"][0]["id"],
                                            "lines": [{"description": "d", "unit_price": "1"}]}).json()["id"]
            for _ in range(6)
        ]  # fmt: skip
        widget = http.get("/ui/widgets/revenue").text
        assert "MRR: 820.00 EUR" in widget  # 24 * 3 seats * 10 + 1200 / 12

    def run(_: int) -> dict[str, Any]:
        with kit.client(tenant, roles=["tenant_admin"]) as c:
            r = c.post("/v1/invoice-runs", json={"as_of": "2026-04-15"})
            assert r.status_code == 200, r.text
            return dict(r.json())

    def issue(invoice_id: str) -> int:
        with kit.client(tenant, roles=["member"]) as c:
            return c.post(f"/v1/invoices/{invoice_id}/issue").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = [pool.submit(run, i) for i in range(4)]
        issues = [pool.submit(issue, d) for d in drafts]
        results = [f.result() for f in runs]
        assert [f.result() for f in issues] == [200] * 6
    # 01-31 → 02-28 → 03-31 → 04-30: two monthly periods are due by 04-15 for each of the 24
    # seat subscriptions; the yearly one is not due yet.
    assert sum(r["issued"] for r in results) == 48
    numbers = [n for r in results for n in r["numbers"]]
    assert len(set(numbers)) == 48
    assert sequences(kit, tenant) == list(range(1, 55))
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        assert http.post("/v1/invoice-runs", json={"as_of": "2026-04-15"}).json()["issued"] == 0
        invoices = http.get("/v1/invoices?status=open&limit=200").json()
        assert invoices["total"] == 54
        billed = [i for i in invoices["items"] if i["subscription_id"] == subs[0]]
        assert sorted(i["period_start"] for i in billed) == ["2026-01-31", "2026-02-28"]
        assert {(i["subtotal"], i["tax"], i["total"]) for i in billed} == {
            ("30.00", "5.70", "35.70")
        }
        sub = next(
            s for s in http.get("/v1/subscriptions?limit=200").json()["items"] if s["id"] == subs[0]
        )
        assert (sub["current_period_start"], sub["current_period_end"]) == (
            "2026-03-31",
            "2026-04-30",
        )
        changed = http.patch(f"/v1/subscriptions/{subs[0]}", json={"status": "canceled"})
        assert changed.json()["status"] == "canceled"
        r = http.patch(f"/v1/subscriptions/{subs[0]}", json={"quantity": 5})
        assert error_code(r, 409) == "invalid_subscription_state"
        metrics = http.get("/v1/metrics").json()
        assert metrics["open_invoices"] == 54
        assert Decimal(metrics["mrr"]["EUR"]) == Decimal("790.00")
        assert (
            http.post("/v1/invoice-runs", json={"as_of": "2027-01-31"}).json()["issued"]
            == 23 * 10 + 1
        )
    assert sequences(kit, tenant) == list(range(1, 55 + 231))


def test_trial_ends_then_bills_from_the_trial_end(kit: PluginTestKit) -> None:
    tenant = kit.tenant("trialco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        plan = http.post("/v1/plans", json={"code": "solo", "name": "Solo", "price": "9.99"}).json()
        customer = http.post("/v1/customers", json={"name": "Pied Piper"}).json()
        sub = http.post(
            "/v1/subscriptions",
            json={"customer_id": customer["id"], "plan_id": plan["id"], "start": "2026-01-01",
                  "trial_days": 14},
        ).json()  # fmt: skip
        assert (sub["status"], sub["current_period_end"]) == ("trialing", "2026-01-15")
        assert http.post("/v1/invoice-runs", json={"as_of": "2026-01-20"}).json()["issued"] == 0
        after = http.get(f"/v1/subscriptions?customer_id={customer['id']}").json()["items"][0]
        assert (after["status"], after["current_period_start"], after["current_period_end"]) == (
            "active", "2026-01-15", "2026-02-15",
        )  # fmt: skip
        run = http.post("/v1/invoice-runs", json={"as_of": "2026-02-15"}).json()
        assert (run["issued"], run["numbers"]) == (1, ["INV-000001"])
    rows = asyncio.run(
        kit.fetch(
            "SELECT data->>'change' AS change FROM platform.outbox WHERE tenant_id = $1"
            " AND type = 'billing.subscription.changed' ORDER BY seq",
            tenant.id,
        )
    )
    assert [r["change"] for r in rows] == ["created", "trial_ended"]


def test_other_tenants_and_roles(kit: PluginTestKit, acme: KitTenant) -> None:
    beta = kit.tenant("beta", install=False)
    with kit.client(beta, roles=["tenant_admin"]) as http:
        assert error_code(http.get("/v1/invoices"), 404) == "not_found"
    with kit.client(acme, roles=["viewer"]) as http:
        assert http.get("/v1/invoices").status_code == 200
        assert http.post("/v1/customers", json={"name": "x"}).status_code == 403
        assert http.post("/v1/invoice-runs", json={}).status_code == 403
    with kit.client(acme, roles=["member"]) as http:
        assert (
            http.post("/v1/plans", json={"code": "x", "name": "x", "price": "1"}).status_code == 403
        )
    with kit.client(None) as http:
        assert http.get("/v1/invoices").status_code == 401
        assert http.get("/ready").json()["checks"] == {"database": "ok"}
