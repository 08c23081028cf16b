"""Cancel at period end (ADR 0237) through the SDK test kit: the plugin over HTTP on a real
PostgreSQL, periods rolled over by invoice runs dated after their end."""

from __future__ import annotations

from typing import Any

import httpx
from billing_kit_helpers import error_code, events

from plexica_sdk.testing import PluginTestKit

# Periods started on 2026-01-31 end on 2026-02-28.
START, END = "2026-01-31", "2026-02-28"


def _subscribe(
    http: httpx.Client, code: str, price: str, start: str = START, trial_days: int = 0, **plan: Any
) -> dict[str, Any]:
    """A new customer on a new plan, from ``start``."""
    made = http.post(
        "/v1/plans", json={"code": code, "name": code.title(), "price": price, **plan}
    ).json()
    customer = http.post("/v1/customers", json={"name": f"{code} Ltd", "currency": "EUR"}).json()
    r = http.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan_id": made["id"], "start": start,
              "trial_days": trial_days},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["cancel_at_period_end"] is False
    return dict(r.json())


def _patch(http: httpx.Client, sub: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    r = http.patch(f"/v1/subscriptions/{sub['id']}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _get(http: httpx.Client, sub: dict[str, Any]) -> dict[str, Any]:
    found = http.get(f"/v1/subscriptions?customer_id={sub['customer_id']}").json()["items"]
    return dict(next(s for s in found if s["id"] == sub["id"]))


def _run(http: httpx.Client, as_of: str) -> int:
    r = http.post("/v1/invoice-runs", json={"as_of": as_of})
    assert r.status_code == 200, r.text
    return int(r.json()["issued"])


def _invoices(http: httpx.Client, sub: dict[str, Any]) -> list[dict[str, Any]]:
    listed = http.get(f"/v1/invoices?customer_id={sub['customer_id']}&limit=200").json()["items"]
    found = [http.get(f"/v1/invoices/{i['id']}").json() for i in listed]
    return sorted(found, key=lambda i: str(i["period_start"]))


def test_a_scheduled_subscription_is_billed_for_its_last_period_then_canceled(
    kit: PluginTestKit,
) -> None:
    tenant = kit.tenant("endco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        flat = _subscribe(http, "basic", "10.00")
        metered = _subscribe(http, "meter", "0.02", pricing="usage")
        other = http.post("/v1/plans", json={"code": "pro", "name": "Pro", "price": "30"}).json()
        for sub in (flat, metered):
            scheduled = _patch(http, sub, {"cancel_at_period_end": True})
            assert (scheduled["status"], scheduled["cancel_at_period_end"]) == ("active", True)
            assert scheduled["canceled_at"] is None

        # No plan change while the cancellation stands; seats and the rest are unchanged.
        refused = http.patch(f"/v1/subscriptions/{flat['id']}", json={"plan_id": other["id"]})
        assert error_code(refused, 409) == "cancellation_scheduled"
        assert refused.json()["error"]["details"] == {"current_period_end": END}
        assert _get(http, flat)["plan_id"] == flat["plan_id"]
        usage = http.post(
            f"/v1/subscriptions/{metered['id']}/usage",
            json={
                "idempotency_key": "feb",
                "quantity": "500",
                "occurred_at": "2026-02-10T09:00:00Z",
            },
        )
        assert usage.status_code == 201, usage.text

        assert _run(http, "2026-02-27") == 0
        assert _get(http, flat)["status"] == "active"
        assert _run(http, END) == 2
        for sub in (flat, metered):
            ended = _get(http, sub)
            assert (ended["status"], ended["cancel_at_period_end"]) == ("canceled", True)
            assert ended["canceled_at"] == f"{END}T00:00:00Z"
            assert (ended["current_period_start"], ended["current_period_end"]) == (START, END)
        assert _run(http, END) == 0
        assert _run(http, "2026-04-30") == 0

        [last] = _invoices(http, flat)
        assert (last["period_start"], last["period_end"], last["total"]) == (START, END, "10.00")
        [billed] = _invoices(http, metered)
        assert [(ln["kind"], ln["quantity"], ln["amount"]) for ln in billed["lines"]] == [
            ("usage", "500.00", "10.00")
        ]
        undo = http.patch(f"/v1/subscriptions/{flat['id']}", json={"cancel_at_period_end": False})
        assert error_code(undo, 409) == "invalid_subscription_state"

    changed = events(kit, tenant, "billing.subscription.changed", f"subscriptions/{flat['id']}")
    assert [(e["change"], e["status"], e["cancel_at_period_end"]) for e in changed] == [
        ("created", "active", False),
        ("updated", "active", True),
        ("canceled", "canceled", True),
    ]


def test_undone_before_the_end_the_subscription_renews(kit: PluginTestKit) -> None:
    tenant = kit.tenant("keepco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        sub = _subscribe(http, "basic", "10.00")
        other = http.post("/v1/plans", json={"code": "pro", "name": "Pro", "price": "30"}).json()
        _patch(http, sub, {"cancel_at_period_end": True})
        # Undoing it and changing the plan in one request is one change.
        both = _patch(http, sub, {"cancel_at_period_end": False, "plan_id": other["id"]})
        assert (both["plan_id"], both["cancel_at_period_end"]) == (other["id"], False)

        assert _run(http, END) == 1
        renewed = _get(http, sub)
        assert (renewed["status"], renewed["current_period_start"]) == ("active", END)
        assert renewed["current_period_end"] == "2026-03-31"
        assert _run(http, "2026-03-31") == 1
        assert [i["total"] for i in _invoices(http, sub)] == ["10.00", "30.00"]

    changed = events(kit, tenant, "billing.subscription.changed", f"subscriptions/{sub['id']}")
    assert [e["change"] for e in changed] == ["created", "updated", "plan_changed"]


def test_canceled_subscriptions_cannot_be_scheduled_and_trials_end_unbilled(
    kit: PluginTestKit,
) -> None:
    tenant = kit.tenant("trialendco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        gone = _subscribe(http, "basic", "10.00")
        _patch(http, gone, {"status": "canceled"})
        again = http.patch(f"/v1/subscriptions/{gone['id']}", json={"cancel_at_period_end": True})
        assert error_code(again, 409) == "invalid_subscription_state"
        assert _get(http, gone)["cancel_at_period_end"] is False

        trial = _subscribe(http, "solo", "9", start="2026-01-01", trial_days=14)
        assert (trial["status"], trial["current_period_end"]) == ("trialing", "2026-01-15")
        _patch(http, trial, {"cancel_at_period_end": True})
        assert _run(http, "2026-01-20") == 0
        ended = _get(http, trial)
        assert (ended["status"], ended["canceled_at"]) == ("canceled", "2026-01-15T00:00:00Z")
        assert _run(http, "2026-03-31") == 0
        assert _invoices(http, trial) == []

    changed = events(kit, tenant, "billing.subscription.changed", f"subscriptions/{trial['id']}")
    assert [e["change"] for e in changed] == ["created", "updated", "canceled"]
