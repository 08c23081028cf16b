"""Every Billing event type, made through the API and read back from the outbox as an
independent consumer would: each record's data meets the schema its type declares."""

from __future__ import annotations

import asyncio
import json

from jsonschema import Draft202012Validator

from plexica_billing.app import plugin_root
from plexica_sdk.manifest import load_manifest
from plexica_sdk.testing import PluginTestKit


def test_every_billing_event_meets_its_declared_schema(kit: PluginTestKit) -> None:
    tenant = kit.tenant("evco")
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        customer = http.post("/v1/customers", json={"name": "Vandelay", "currency": "EUR"}).json()
        plan = http.post("/v1/plans", json={"code": "basic", "name": "Basic", "price": "9"}).json()
        sub = http.post(
            "/v1/subscriptions", json={"customer_id": customer["id"], "plan_id": plan["id"]}
        )
        assert sub.status_code == 201, sub.text
        line = [{"description": "Latex", "unit_price": "50.00"}]
        ids = [
            http.post("/v1/invoices", json={"customer_id": customer["id"], "lines": line}).json()[
                "id"
            ]
            for _ in range(4)
        ]
        added = http.post(f"/v1/invoices/{ids[1]}/lines", json=line)
        assert added.status_code == 200, added.text
        for invoice_id in ids[1:]:
            assert http.post(f"/v1/invoices/{invoice_id}/issue").status_code == 200
        assert http.post(f"/v1/invoices/{ids[0]}/void").status_code == 200
        assert http.post(f"/v1/invoices/{ids[1]}/uncollectible").status_code == 200
        due = http.get(f"/v1/invoices/{ids[2]}").json()["amount_due"]
        paid = http.post(f"/v1/invoices/{ids[2]}/payments", json={"amount": due})
        assert paid.status_code == 201, paid.text
        note = http.post(
            f"/v1/invoices/{ids[3]}/credit-notes", json={"amount": "1.00", "reason": "goodwill"}
        )
        assert note.status_code == 201, note.text
        for url, body in (
            (f"/v1/customers/{customer['id']}", {"name": "Vandelay Industries", "email": None,
                                                 "crm_company_id": str(customer["id"])}),
            (f"/v1/plans/{plan['id']}", {"name": "Basic+", "price": "9.5"}),
        ):  # fmt: skip
            changed = http.patch(url, json=body)
            assert changed.status_code == 200, changed.text
        spare = http.post("/v1/customers", json={"name": "Spare"}).json()
        unused = http.post("/v1/plans", json={"code": "unused", "name": "U", "price": "1"}).json()
        for url in (f"/v1/customers/{spare['id']}", f"/v1/plans/{unused['id']}"):
            assert http.delete(url).status_code == 204

    declared = {e.type: e.data_schema for e in load_manifest(plugin_root()).events.emits}
    rows = asyncio.run(
        kit.fetch(
            "SELECT type, subject, data FROM platform.outbox WHERE source = '/plugins/billing'"
            " AND tenant_id = $1 ORDER BY seq",
            tenant.id,
        )
    )
    assert {r["type"] for r in rows} == set(declared)
    for row in rows:
        schema = declared[row["type"]]
        assert schema is not None
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert not list(validator.iter_errors(json.loads(row["data"]))), row
