"""Changing and deleting customers and plans (ADR 0223) through the SDK test kit: the plugin
over HTTP on a real PostgreSQL; each change's event read back from the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from billing_kit_helpers import count, error_code, events

from plexica_sdk.testing import KitTenant, PluginTestKit


@pytest.fixture(scope="module")
def tenant(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("billupd")


def _customer(http: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    r = http.post("/v1/customers", json={"name": name, "currency": "EUR", **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _plan(http: httpx.Client, code: str, price: str) -> dict[str, Any]:
    r = http.post("/v1/plans", json={"code": code, "name": code.title(), "price": price})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _subscribe(http: httpx.Client, customer: str, plan: str, start: str) -> dict[str, Any]:
    body = {"customer_id": customer, "plan_id": plan, "start": start}
    r = http.post("/v1/subscriptions", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _run(http: httpx.Client, as_of: str) -> list[str]:
    r = http.post("/v1/invoice-runs", json={"as_of": as_of})
    assert r.status_code == 200, r.text
    return list(r.json()["numbers"])


def _total(http: httpx.Client, number: str) -> str:
    found = [i for i in http.get("/v1/invoices?limit=200").json()["items"] if i["number"] == number]
    assert len(found) == 1, found
    return str(found[0]["total"])


def _period_end(http: httpx.Client, subscription: str) -> str:
    subs = http.get("/v1/subscriptions?limit=200").json()["items"]
    return str(next(s for s in subs if s["id"] == subscription)["current_period_end"])


def test_a_customer_changes_field_by_field_and_each_real_change_is_announced(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    with kit.client(tenant, roles=["tenant_admin"], sub="ada") as http:
        c = _customer(http, "Vandelay", email="art@vandelay.example")
        url, subject = f"/v1/customers/{c['id']}", f"customers/{c['id']}"
        company = str(uuid.uuid4())
        r = http.patch(url, json={"name": "Vandelay Industries", "crm_company_id": company})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "Vandelay Industries"
        assert r.json()["email"] == "art@vandelay.example"
        # The same values again, and an unchanged one: nothing changes, nothing is announced.
        assert http.patch(url, json={"name": "Vandelay Industries"}).status_code == 200
        r = http.patch(url, json={"email": None, "currency": "usd", "crm_company_id": company})
        assert r.status_code == 200, r.text
        assert (r.json()["email"], r.json()["currency"]) == (None, "USD")
        assert http.get(url).json() == r.json()

        published = events(kit, tenant, "billing.customer.updated", subject)
        assert published == [
            {
                "customer_id": c["id"],
                "changes": {
                    "name": {"from": "Vandelay", "to": "Vandelay Industries"},
                    "crm_company_id": {"from": None, "to": company},
                },
                "updated_by": "ada",
            },
            {
                "customer_id": c["id"],
                "changes": {
                    "email": {"from": "art@vandelay.example", "to": None},
                    "currency": {"from": "EUR", "to": "USD"},
                },
                "updated_by": "ada",
            },
        ]


def test_customer_changes_that_cannot_be_made_are_refused(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        c = _customer(http, "Kramerica")
        other = _customer(http, "Pendant", crm_company_id=str(uuid.uuid4()))
        url = f"/v1/customers/{c['id']}"
        for body in (
            {},
            {"name": None},
            {"name": ""},
            {"currency": None},
            {"email": "not an address"},
            {"created_at": "2020-01-01T00:00:00Z"},
            {"id": str(uuid.uuid4())},
        ):
            assert error_code(http.patch(url, json=body), 422) == "validation_error", body
        assert error_code(http.patch(url, json={"currency": "QQQ"}), 422) == "unknown_currency"
        for bad in ({"name": "nul\u0000byte"}, {"crm_company_id": "not-a-uuid"}, ["name"], "x"):
            assert http.patch(url, json=bad).status_code in (400, 422), bad
        taken = {"crm_company_id": other["crm_company_id"]}
        assert error_code(http.patch(url, json=taken), 409) == "already_exists"
        missing = f"/v1/customers/{uuid.uuid4()}"
        r = http.patch(missing, json={"name": "Nobody"})
        assert error_code(r, 404) == "not_found"
        assert set(r.json()["error"]) == {"code", "message", "details"}
        assert http.patch("/v1/customers/not-a-uuid", json={"name": "x"}).status_code == 422

        invoice = http.post("/v1/invoices", json={"customer_id": c["id"]})
        assert invoice.status_code == 201, invoice.text
        has_invoices = http.patch(url, json={"currency": "USD"})
        assert error_code(has_invoices, 409) == "customer_has_invoices"
        # Other fields still change; the refused ones left no trace.
        assert http.patch(url, json={"name": "Kramerica Industries"}).status_code == 200
        assert http.get(url).json()["currency"] == "EUR"
        [only] = events(kit, tenant, "billing.customer.updated", f"customers/{c['id']}")
        assert list(only["changes"]) == ["name"]
        assert http.get(f"/v1/customers/{other['id']}").json()["name"] == "Pendant"
    with kit.client(tenant, roles=["viewer"]) as http:
        assert http.patch(url, json={"name": "Viewer"}).status_code == 403
        assert http.delete(url).status_code == 403


def test_a_customer_is_deleted_only_when_never_invoiced_and_nothing_is_live(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    with kit.client(tenant, roles=["tenant_admin"], sub="bob") as http:
        plan = _plan(http, "del-basic", "10.00")
        gone = _customer(http, "Short-lived")
        ended = _subscribe(http, gone["id"], plan["id"], "2026-01-05")
        r = http.patch(f"/v1/subscriptions/{ended['id']}", json={"status": "canceled"})
        assert r.status_code == 200, r.text
        live = _customer(http, "Subscribed")
        _subscribe(http, live["id"], plan["id"], "2026-01-05")
        invoiced = _customer(http, "Invoiced")
        assert http.post("/v1/invoices", json={"customer_id": invoiced["id"]}).status_code == 201

        subs_before = count(kit, tenant, "billing_subscriptions")
        r = http.delete(f"/v1/customers/{gone['id']}")
        assert r.status_code == 204, r.text
        assert r.content == b""
        # Its canceled subscription, never billed, went with it.
        assert count(kit, tenant, "billing_subscriptions") == subs_before - 1
        assert error_code(http.get(f"/v1/customers/{gone['id']}"), 404) == "not_found"
        assert error_code(http.delete(f"/v1/customers/{gone['id']}"), 404) == "not_found"
        r = http.patch(f"/v1/customers/{gone['id']}", json={"name": "x"})
        assert error_code(r, 404) == "not_found"
        assert events(kit, tenant, "billing.customer.deleted", f"customers/{gone['id']}") == [
            {"customer_id": gone["id"], "name": "Short-lived", "crm_company_id": None,
             "deleted_by": "bob"}
        ]  # fmt: skip

        for busy in (live, invoiced):
            r = http.delete(f"/v1/customers/{busy['id']}")
            assert error_code(r, 409) == "customer_in_use"
            assert http.get(f"/v1/customers/{busy['id']}").status_code == 200
        assert error_code(http.delete(f"/v1/plans/{plan['id']}"), 409) == "plan_in_use"
        # Creating on a deleted customer is an unknown reference, not a server error.
        body = {"customer_id": gone["id"], "plan_id": plan["id"]}
        assert error_code(http.post("/v1/subscriptions", json=body), 422) == "unknown_reference"


def test_a_new_price_bills_from_the_next_period_and_issued_invoices_keep_theirs(
    kit: PluginTestKit,
) -> None:
    tenant = kit.tenant("billprice")  # its own: the invoice run bills every due subscription
    today = datetime.now(UTC).date()
    with kit.client(tenant, roles=["tenant_admin"], sub="cy") as http:
        plan = _plan(http, "repriced", "10.00")
        c = _customer(http, "Monk's")
        # Billed once already, its second period under way when the price changes.
        running = _subscribe(http, c["id"], plan["id"], (today - timedelta(days=40)).isoformat())
        [first] = _run(http, running["current_period_end"])
        # Its first period not begun yet: it starts on the new price.
        starting = _subscribe(http, c["id"], plan["id"], (today + timedelta(days=3)).isoformat())

        url = f"/v1/plans/{plan['id']}"
        r = http.patch(url, json={"price": "12.5", "name": "Repriced plan"})
        assert r.status_code == 200, r.text
        assert (r.json()["price"], r.json()["name"]) == ("12.50", "Repriced plan")
        assert http.patch(url, json={"price": "12.50"}).status_code == 200  # no change
        assert events(kit, tenant, "billing.plan.updated", f"plans/{plan['id']}") == [
            {
                "plan_id": plan["id"],
                "code": "repriced",
                "changes": {
                    "price": {"from": "10.00", "to": "12.50"},
                    "name": {"from": "Repriced", "to": "Repriced plan"},
                },
                "updated_by": "cy",
            }
        ]

        [second] = _run(http, _period_end(http, running["id"]))
        [third] = _run(http, _period_end(http, starting["id"]))
        [fourth] = _run(http, _period_end(http, running["id"]))
        assert [_total(http, n) for n in (first, second, third, fourth)] == [
            "10.00",  # issued before the change, never touched
            "10.00",  # the period under way when the price changed
            "12.50",  # a period begun after it
            "12.50",
        ]


def test_plan_changes_that_cannot_be_made_are_refused(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        plan = _plan(http, "fixed", "5.00")
        url = f"/v1/plans/{plan['id']}"
        for body in (
            {},
            {"price": None},
            {"price": "-1"},
            {"price": "1.001"},
            {"price": "NaN"},
            {"name": ""},
            {"code": "other"},
            {"currency": "USD"},
            {"pricing": "per_seat"},
            {"billing_interval": "year"},
            {"tax_rate": "7"},
        ):
            assert error_code(http.patch(url, json=body), 422) == "validation_error", body
        r = http.patch(f"/v1/plans/{uuid.uuid4()}", json={"name": "x"})
        assert error_code(r, 404) == "not_found"
        assert error_code(http.delete(f"/v1/plans/{uuid.uuid4()}"), 404) == "not_found"
        assert events(kit, tenant, "billing.plan.updated", f"plans/{plan['id']}") == []
    with kit.client(tenant, roles=["member"]) as http:
        # Plans are the admin's: members read them.
        assert http.patch(url, json={"name": "Member's"}).status_code == 403
        assert http.delete(url).status_code == 403


def test_a_plan_is_deleted_only_when_no_subscription_was_ever_on_it(
    kit: PluginTestKit, tenant: KitTenant
) -> None:
    with kit.client(tenant, roles=["tenant_admin"], sub="dee") as http:
        unused = _plan(http, "unused", "1.00")
        used = _plan(http, "used", "2.00")
        c = _customer(http, "Costanza")
        sub = _subscribe(http, c["id"], used["id"], "2026-01-05")
        r = http.patch(f"/v1/subscriptions/{sub['id']}", json={"status": "canceled"})
        assert r.status_code == 200, r.text

        r = http.delete(f"/v1/plans/{unused['id']}")
        assert r.status_code == 204, r.text
        assert error_code(http.delete(f"/v1/plans/{unused['id']}"), 404) == "not_found"
        assert unused["id"] not in {p["id"] for p in http.get("/v1/plans").json()["items"]}
        assert events(kit, tenant, "billing.plan.deleted", f"plans/{unused['id']}") == [
            {"plan_id": unused["id"], "code": "unused", "deleted_by": "dee"}
        ]
        # Even a canceled subscription keeps naming its plan.
        r = http.delete(f"/v1/plans/{used['id']}")
        assert error_code(r, 409) == "plan_in_use"
        assert r.json()["error"]["details"] == {"subscriptions": 1}
        body = {"customer_id": c["id"], "plan_id": unused["id"]}
        assert error_code(http.post("/v1/subscriptions", json=body), 422) == "unknown_reference"
        # Its code is free again.
        assert (
            http.post("/v1/plans", json={"code": "unused", "name": "U", "price": "1"}).status_code
            == 201
        )
