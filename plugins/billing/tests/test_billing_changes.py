"""Proration of plan changes, usage-based plans and credit notes, through the SDK test kit: the
plugin over HTTP on a real PostgreSQL, the platform driven through its CLI."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
from billing_kit_helpers import count, error_code, sequences, subscribe

from plexica_billing.subscriptions import prorate
from plexica_sdk.testing import KitTenant, PluginTestKit


def _plan(http: httpx.Client, code: str, price: str, **extra: Any) -> str:
    r = http.post("/v1/plans", json={"code": code, "name": code.title(), "price": price, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _subscription(http: httpx.Client, plan: str, quantity: int = 1, name: str = "Hooli") -> str:
    customer = http.post("/v1/customers", json={"name": name, "currency": "EUR"}).json()
    return subscribe(http, customer["id"], plan, quantity)


def _run(http: httpx.Client, as_of: str) -> dict[str, Any]:
    r = http.post("/v1/invoice-runs", json={"as_of": as_of})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _invoices_of(http: httpx.Client, subscription: str) -> list[dict[str, Any]]:
    items = http.get("/v1/invoices?limit=200").json()["items"]
    found = [
        http.get(f"/v1/invoices/{i['id']}").json()
        for i in items
        if i["subscription_id"] == subscription
    ]
    return sorted(found, key=lambda i: str(i["period_start"]))


def _outbox(kit: PluginTestKit, tenant: KitTenant, event_type: str) -> list[dict[str, Any]]:
    rows = asyncio.run(
        kit.fetch(
            "SELECT data FROM platform.outbox WHERE tenant_id = $1 AND type = $2 ORDER BY seq",
            tenant.id,
            event_type,
        )
    )
    return [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]


def test_proration_rounds_half_up_away_from_zero() -> None:
    assert prorate(Decimal("0.35"), 1, 2) == Decimal("0.18")
    assert prorate(Decimal("-0.35"), 1, 2) == Decimal("-0.18")
    assert prorate(Decimal("30"), 18, 28) == Decimal("19.29")  # 19.2857…
    assert prorate(Decimal("100"), 18, 28) == Decimal("64.29")  # 64.2857…
    assert prorate(Decimal("100"), 28, 28) == Decimal("100.00")


def test_plan_change_mid_period_is_prorated_on_the_period_invoice(kit: PluginTestKit) -> None:
    tenant = kit.tenant("proco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        basic = _plan(http, "basic", "10.00", pricing="per_seat", tax_rate="19")
        pro = _plan(http, "pro", "100.00", tax_rate="19")
        dollars = _plan(http, "pro-usd", "100.00", currency="USD")
        yearly = _plan(http, "pro-year", "1000.00", billing_interval="year")
        sub = _subscription(http, basic, quantity=3)  # period 2026-01-31 → 2026-02-28, 28 days
        before = http.get("/v1/subscriptions?limit=200").json()["items"][0]

        bad: list[tuple[dict[str, Any], str]] = [
            ({"plan_id": dollars, "effective": "2026-02-10"}, "currency_mismatch"),
            ({"plan_id": yearly, "effective": "2026-02-10"}, "billing_interval_mismatch"),
            ({"plan_id": pro, "effective": "2026-02-28"}, "invalid_date"),
            ({"plan_id": pro, "effective": "2026-01-30"}, "invalid_date"),
            ({"plan_id": str(uuid.uuid4()), "effective": "2026-02-10"}, "unknown_reference"),
            ({"quantity": -1}, "validation_error"),
            ({"effective": "someday", "quantity": 4}, "validation_error"),
        ]
        for body, code in bad:
            r = http.patch(f"/v1/subscriptions/{sub}", json=body)
            assert error_code(r, 422) == code, body
        assert http.get("/v1/subscriptions?limit=200").json()["items"][0] == before
        assert count(kit, tenant, "billing_subscription_items") == 0
        assert http.get(f"/v1/subscriptions/{uuid.uuid4()}/pending-items").status_code == 404

        up = http.patch(
            f"/v1/subscriptions/{sub}", json={"plan_id": pro, "effective": "2026-02-10"}
        )
        assert up.status_code == 200, up.text
        assert up.json()["plan_id"] == pro
        items = http.get(f"/v1/subscriptions/{sub}/pending-items").json()
        # 18 of 28 days left: credit 3 seats x 10.00 x 18/28, charge 100.00 x 18/28.
        assert [i["amount"] for i in items] == ["-19.29", "64.29"]
        assert (
            "Unused time on Basic x 3 (2026-02-10 to 2026-02-28, 18 of 28 days)"
            in items[0]["description"]
        )
        # Same price again (a flat plan's seats): nothing to prorate.
        same = http.patch(
            f"/v1/subscriptions/{sub}", json={"quantity": 2, "effective": "2026-02-20"}
        )
        assert same.status_code == 200, same.text
        assert len(http.get(f"/v1/subscriptions/{sub}/pending-items").json()) == 2

        # Changed today, long after its first period ended unbilled: that period keeps its plan.
        late = _subscription(http, basic, name="Late Co")
        r = http.patch(f"/v1/subscriptions/{late}", json={"plan_id": pro})
        assert r.status_code == 200, r.text
        assert http.get(f"/v1/subscriptions/{late}/pending-items").json() == []

        first = _run(http, "2026-02-28")
        assert first["issued"] == 2
        assert _run(http, "2026-02-28")["issued"] == 0
        assert http.get(f"/v1/subscriptions/{sub}/pending-items").json() == []
        assert _run(http, "2026-03-31")["issued"] == 2
        assert [i["total"] for i in _invoices_of(http, late)] == ["11.90", "119.00"]
        feb, mar = _invoices_of(http, sub)
        assert [(ln["kind"], ln["amount"], ln["tax"]) for ln in feb["lines"]] == [
            ("charge", "30.00", "5.70"),  # the plan the period started with
            ("proration", "-19.29", "-3.67"),
            ("proration", "64.29", "12.22"),
        ]
        assert (feb["subtotal"], feb["tax"], feb["total"]) == ("75.00", "14.25", "89.25")
        assert [(ln["kind"], ln["amount"]) for ln in mar["lines"]] == [("charge", "100.00")]
        assert mar["total"] == "119.00"
    changed = _outbox(kit, tenant, "billing.subscription.changed")
    assert [c["change"] for c in changed] == [
        "created", "plan_changed", "updated", "created", "plan_changed",
    ]  # fmt: skip
    assert changed[1]["previous_plan_id"] == basic
    assert [p["amount"] for p in changed[1]["proration"]] == ["-19.29", "64.29"]


def test_usage_is_recorded_once_and_billed_once(kit: PluginTestKit) -> None:
    tenant = kit.tenant("meterco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        api = _plan(http, "api", "0.02", pricing="usage")
        flat = _plan(http, "flat", "5.00")
        sub = _subscription(http, api)
        flat_sub = _subscription(http, flat, name="Flat Co")
        url = f"/v1/subscriptions/{sub}/usage"

        def report(key: str, quantity: str, at: str) -> httpx.Response:
            return http.post(url, json={"idempotency_key": key, "quantity": quantity,
                                        "occurred_at": at})  # fmt: skip

        first = report("k1", "1000", "2026-02-05T10:00:00Z")
        assert first.status_code == 201, first.text
        again = report("k1", "1000", "2026-02-05T10:00:00Z")
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert (
            error_code(report("k1", "999", "2026-02-05T10:00:00Z"), 409) == "idempotency_key_reused"
        )
        for body, status, code in [
            ({"idempotency_key": "n", "quantity": "-1"}, 422, "validation_error"),
            ({"idempotency_key": "n", "quantity": "lots"}, 422, "validation_error"),
            ({"idempotency_key": "n", "quantity": "NaN"}, 422, "validation_error"),
            ({"idempotency_key": "", "quantity": "1"}, 422, "validation_error"),
            ({"idempotency_key": "n", "quantity": "1", "occurred_at": "2026-02-05T10:00:00"},
             422, "validation_error"),
            ({"idempotency_key": "n", "quantity": "1", "occurred_at": "2099-01-01T00:00:00Z"},
             422, "invalid_date"),
        ]:  # fmt: skip
            assert error_code(http.post(url, json=body), status) == code, body
        r = http.post(
            f"/v1/subscriptions/{flat_sub}/usage", json={"idempotency_key": "f", "quantity": "1"}
        )
        assert error_code(r, 422) == "plan_not_metered"
        r = http.post(
            f"/v1/subscriptions/{uuid.uuid4()}/usage",
            json={"idempotency_key": "u", "quantity": "1"},
        )
        assert error_code(r, 404) == "not_found"
        assert count(kit, tenant, "billing_usage_records") == 1

        assert report("k2", "500.5", "2026-02-27T23:59:59Z").status_code == 201
        assert report("k3", "7", "2026-03-02T00:00:00Z").status_code == 201  # next period
        assert report("zero", "0", "2026-02-06T00:00:00Z").status_code == 201

        def concurrent(_: int) -> int:
            with kit.client(tenant, roles=["member"]) as c:
                return c.post(url, json={"idempotency_key": "k4", "quantity": "1",
                                         "occurred_at": "2026-02-10T00:00:00Z"}).status_code  # fmt: skip

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert sorted(pool.map(concurrent, range(4))) == [200, 200, 200, 201]
        assert count(kit, tenant, "billing_usage_records") == 5
        assert http.get(f"{url}?limit=2").json()["total"] == 5

        assert _run(http, "2026-02-28")["issued"] == 2  # the usage and the flat subscription
        assert _run(http, "2026-02-28")["issued"] == 0
        late = report("late", "3", "2026-02-20T00:00:00Z")  # reported after its period was billed
        assert late.status_code == 201
        assert _run(http, "2026-03-31")["issued"] == 2
        assert _run(http, "2026-04-30")["issued"] == 2
        feb, mar, apr = _invoices_of(http, sub)
        assert [
            (ln["kind"], ln["quantity"], ln["unit_price"], ln["amount"]) for ln in feb["lines"]
        ] == [("usage", "1501.50", "0.02", "30.03")]
        assert (feb["status"], feb["total"]) == ("open", "30.03")
        assert [(ln["quantity"], ln["amount"]) for ln in mar["lines"]] == [("10.00", "0.20")]
        # No usage in April: the period is still invoiced, for nothing, and settled.
        assert [(ln["kind"], ln["quantity"], ln["amount"]) for ln in apr["lines"]] == [
            ("usage", "0.00", "0.00")
        ]
        assert (apr["status"], apr["total"], apr["amount_due"]) == ("paid", "0.00", "0.00")
        paid = [e["invoice_id"] for e in _outbox(kit, tenant, "billing.invoice.paid")]
        assert apr["id"] in paid
        assert feb["id"] not in paid

        canceled = http.patch(f"/v1/subscriptions/{sub}", json={"status": "canceled"})
        assert canceled.status_code == 200, canceled.text
        assert (
            error_code(report("k9", "1", "2026-05-01T00:00:00Z"), 409)
            == "invalid_subscription_state"
        )
        assert http.get("/v1/metrics").json()["mrr"] == {"EUR": "5.00"}  # usage is not recurring

    rows = asyncio.run(
        kit.fetch(
            f"SELECT count(*) FILTER (WHERE invoice_id IS NULL) AS unbilled, sum(quantity) AS q"
            f' FROM "{tenant.schema}".billing_usage_records'
        )
    )
    billed = asyncio.run(
        kit.fetch(
            f'SELECT sum(quantity) AS q FROM "{tenant.schema}".billing_invoice_lines'
            " WHERE kind = 'usage'"
        )
    )
    assert rows[0]["unbilled"] == 0
    assert rows[0]["q"] == billed[0]["q"] == Decimal("1511.50")


def _pdf_text(pdf: bytes) -> str:
    chunks = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            chunks.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            chunks.append(stream.decode("latin-1"))
    return "".join(chunks)


def test_credit_notes_lower_what_is_due_and_refund_paid_invoices(kit: PluginTestKit) -> None:
    tenant = kit.tenant("creditco")
    with kit.client(tenant, roles=["tenant_admin"], sub="cora") as http:
        customer = http.post("/v1/customers", json={"name": "Vandelay"}).json()

        def invoice(price: str, *, issue: bool = True) -> dict[str, Any]:
            r = http.post(
                "/v1/invoices",
                json={"customer_id": customer["id"],
                      "lines": [{"description": "Import", "unit_price": price, "tax_rate": "20"}]},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            if issue:
                r = http.post(f"/v1/invoices/{r.json()['id']}/issue")
                assert r.status_code == 200, r.text
            return dict(r.json())

        def credit(inv: dict[str, Any], amount: str, reason: str = "goodwill") -> httpx.Response:
            return http.post(
                f"/v1/invoices/{inv['id']}/credit-notes", json={"amount": amount, "reason": reason}
            )

        draft = invoice("10", issue=False)
        assert error_code(credit(draft, "1"), 409) == "invalid_invoice_state"
        inv = invoice("100")  # 120.00 with tax
        for body, code in [
            ({"amount": "0", "reason": "x"}, "validation_error"),
            ({"amount": "-5", "reason": "x"}, "validation_error"),
            ({"amount": "five", "reason": "x"}, "validation_error"),
            ({"amount": "5"}, "validation_error"),
            ({"amount": "5", "reason": ""}, "validation_error"),
        ]:
            r = http.post(f"/v1/invoices/{inv['id']}/credit-notes", json=body)
            assert error_code(r, 422) == code, body
        r = credit(inv, "120.01")
        assert error_code(r, 422) == "credit_exceeds_invoice"
        assert r.json()["error"]["details"] == {"creditable": "120.00"}
        assert count(kit, tenant, "billing_credit_notes") == 0

        note = credit(inv, "30", "Late delivery")
        assert note.status_code == 201, note.text
        assert (note.json()["number"], note.json()["kind"], note.json()["tax"]) == (
            "CN-000001", "credit", "5.00",
        )  # fmt: skip
        after = http.get(f"/v1/invoices/{inv['id']}").json()
        assert (after["status"], after["credited"], after["amount_due"]) == (
            "open",
            "30.00",
            "90.00",
        )
        assert "Amount due" in http.get(f"/ui/invoices/{inv['id']}").text
        r = http.post(f"/v1/invoices/{inv['id']}/payments", json={"amount": "120.00"})
        assert error_code(r, 422) == "invalid_amount"
        assert r.json()["error"]["details"] == {"expected": "90.00"}
        assert (
            http.post(f"/v1/invoices/{inv['id']}/payments", json={"amount": "90.00"}).status_code
            == 201
        )

        assert error_code(credit(inv, "90.01"), 422) == "credit_exceeds_invoice"
        refund = credit(inv, "40", "Returned goods")
        assert refund.status_code == 201, refund.text
        assert (refund.json()["number"], refund.json()["kind"]) == ("CN-000002", "refund")
        paid = http.get(f"/v1/invoices/{inv['id']}").json()
        assert (paid["status"], paid["credited"], paid["amount_due"]) == ("paid", "70.00", "0.00")
        assert [n["number"] for n in paid["credit_notes"]] == ["CN-000001", "CN-000002"]
        page = http.get(f"/ui/invoices/{inv['id']}").text
        assert "CN-000001" in page
        assert "Returned goods" in page
        pdf = http.get(f"/v1/invoices/{inv['id']}/pdf")
        assert pdf.status_code == 200
        text = _pdf_text(pdf.content)
        assert "CN-000002" in text
        assert "Credited: -70.00" in text

        voided = invoice("10", issue=False)
        http.post(f"/v1/invoices/{voided['id']}/void").raise_for_status()
        assert error_code(credit(voided, "1"), 409) == "invalid_invoice_state"

        whole = invoice("50")  # 60.00: credited in full, nothing is left to pay
        settled = credit(whole, "60.00")
        assert settled.status_code == 201, settled.text
        closed = http.get(f"/v1/invoices/{whole['id']}").json()
        assert (closed["status"], closed["amount_due"]) == ("paid", "0.00")
        r = http.post(f"/v1/invoices/{whole['id']}/payments", json={"amount": "60.00"})
        assert error_code(r, 409) == "invoice_already_paid"

        contested = invoice("100")

        def race(_: int) -> int:
            with kit.client(tenant, roles=["tenant_admin"]) as c:
                return c.post(
                    f"/v1/invoices/{contested['id']}/credit-notes",
                    json={"amount": "40", "reason": "race"},
                ).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert sorted(pool.map(race, range(4))) == [201, 201, 201, 422]
        assert http.get(f"/v1/invoices/{contested['id']}").json()["status"] == "paid"
        assert http.get("/v1/credit-notes?limit=1").json()["total"] == 6
    with kit.client(tenant, roles=["member"]) as http:
        assert credit_forbidden(http, inv["id"]) == 403
    assert sequences(kit, tenant, "billing_credit_notes") == list(range(1, 7))
    issued = _outbox(kit, tenant, "billing.credit_note.issued")
    assert [e["number"] for e in issued] == [f"CN-{n:06d}" for n in range(1, 7)]
    # Settled by a payment, by a credit note for the whole amount due, by the race's last note.
    paid_events = [e["invoice_id"] for e in _outbox(kit, tenant, "billing.invoice.paid")]
    assert paid_events == [inv["id"], whole["id"], contested["id"]]


def credit_forbidden(http: httpx.Client, invoice_id: str) -> int:
    r = http.post(f"/v1/invoices/{invoice_id}/credit-notes", json={"amount": "1", "reason": "x"})
    return r.status_code
