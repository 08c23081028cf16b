"""The CRM through the SDK test kit: a real local Plexica (its CLI) and a real PostgreSQL, the
plugin served over HTTP, callers with real tokens. Imports only the SDK and the plugin."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from plexica_sdk.manifest import load_manifest
from plexica_sdk.testing import KitTenant, PluginTestKit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def acme(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("acme")


def sales_flow(kit: PluginTestKit, tenant: KitTenant) -> None:
    """A company, a contact, a deal taken to won and a completed task, as a member would."""
    with kit.client(tenant, roles=["member"], sub="sam") as http:
        company = http.post("/v1/companies", json={"name": "Initech", "domain": "initech.test"})
        assert company.status_code == 201, company.text
        contact = http.post(
            "/v1/contacts",
            json={
                "first_name": "Peter",
                "last_name": "Gibbons",
                "company_id": company.json()["id"],
            },
        ).json()
        deal = http.post(
            "/v1/deals",
            json={"title": "TPS reports", "amount": "999.99", "contact_id": contact["id"]},
        ).json()
        for stage in ("qualified", "proposal", "won"):
            r = http.post(f"/v1/deals/{deal['id']}/stage", json={"stage_id": stage})
            assert r.status_code == 200, r.text
        r = http.post(f"/v1/deals/{deal['id']}/stage", json={"stage_id": "nowhere"})
        assert r.status_code == 422
        task = http.post(
            "/v1/activities",
            json={
                "kind": "task",
                "subject": "Send contract",
                "contact_id": contact["id"],
                "deal_id": deal["id"],
            },
        ).json()
        assert http.post(f"/v1/activities/{task['id']}/done").json()["done"] is True
        assert http.get(f"/v1/activities?contact_id={contact['id']}").json()["total"] == 1
        assert next(s["id"] for s in http.get("/v1/stages").json()) == "lead"
        found = http.get("/v1/contacts?q=gibb").json()
        assert [c["id"] for c in found["items"]] == [contact["id"]]
        assert http.get(f"/v1/companies/{company.json()['id']}").json()["name"] == "Initech"
        widget = http.get("/ui/widgets/pipeline").text
        assert 'data-stage="won"' in widget
        assert "Peter Gibbons" in http.get(f"/ui/contacts/{contact['id']}").text


def test_sales_flow_emits_events(kit: PluginTestKit, acme: KitTenant) -> None:
    sales_flow(kit, acme)
    rows = asyncio.run(
        kit.fetch(
            "SELECT type, tenant_id, source, data FROM platform.outbox"
            " WHERE tenant_id = $1 AND source = '/plugins/crm' ORDER BY seq",
            acme.id,
        )
    )
    types = [r["type"] for r in rows]
    assert types == [
        "crm.company.created",
        "crm.contact.created",
        "crm.deal.created",
        *["crm.deal.stage_changed"] * 3,
        "crm.deal.won",
        "crm.activity.created",
        "crm.activity.completed",
    ]


def test_every_event_meets_its_declared_schema(kit: PluginTestKit) -> None:
    """A consumer of its own: every CRM record in the outbox, read as stored, validated with
    jsonschema against the schema the manifest declares for its type. Its own tenant and flow:
    xdist may run it on another worker than the test above."""
    schemas = {e.type: e.data_schema for e in load_manifest(ROOT).events.emits}
    assert all(schemas.values())
    globex = kit.tenant("globex")
    sales_flow(kit, globex)
    rows = asyncio.run(
        kit.fetch(
            "SELECT type, subject, data FROM platform.outbox"
            " WHERE tenant_id = $1 AND source = '/plugins/crm' ORDER BY seq",
            globex.id,
        )
    )
    assert rows
    assert {r["type"] for r in rows} <= set(schemas)
    for row in rows:
        validator = Draft202012Validator(
            schemas[row["type"]], format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        assert not list(validator.iter_errors(json.loads(row["data"]))), row
        assert re.fullmatch(r"[a-z-]+/[0-9a-f-]{36}", row["subject"]), row["subject"]


def test_other_tenants_and_roles(kit: PluginTestKit, acme: KitTenant) -> None:
    beta = kit.tenant("beta", install=False)
    with kit.client(beta, roles=["tenant_admin"]) as http:
        r = http.get("/v1/contacts")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
    with kit.client(acme, roles=["viewer"]) as http:
        assert http.get("/v1/deals").status_code == 200
        assert http.post("/v1/deals", json={"title": "x"}).status_code == 403
    with kit.client(acme, roles=["guest"]) as http:
        assert http.get("/v1/deals").status_code == 403
    with kit.client(None) as http:
        assert http.get("/v1/deals").status_code == 401
        assert http.get("/health").status_code == 200
        assert http.get("/ready").json()["checks"] == {"database": "ok"}


def test_pooled_connections_closed_by_the_server_are_replaced(
    kit: PluginTestKit, acme: KitTenant
) -> None:
    """No ping per checkout (ADR 0086): a request whose pooled connection the server closed
    (a restart, an idle timeout) still gets its answer, on a new connection."""
    with kit.client(acme, roles=["member"]) as http:
        contact = http.post("/v1/contacts", json={"first_name": "Pooled"}).json()
        for _ in range(3):
            assert http.get(f"/v1/contacts/{contact['id']}").status_code == 200
        closed = asyncio.run(
            kit.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'plexica-plugin-crm'"
            )
        )
        assert closed
        assert all(r[0] for r in closed)
        for _ in range(3):
            r = http.get(f"/v1/contacts/{contact['id']}")
            assert r.status_code == 200, r.text
            assert r.json()["first_name"] == "Pooled"
