"""Changing and deleting companies, contacts and deals through the SDK test kit (real local
Plexica and PostgreSQL, the plugin over HTTP): the events each change emits, what a delete
leaves behind (ADR 0222), and the refusals (404, 422) in the one error shape."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from crm_kit_helpers import events, made

from plexica_sdk.testing import KitTenant, PluginTestKit


@pytest.fixture(scope="module")
def shop(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("changes")


def test_a_company_is_updated_and_deleted(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    company = made(http.post("/v1/companies", json={"name": "Initech", "domain": "initech.test"}))
    contact = made(
        http.post("/v1/contacts", json={"first_name": "Peter", "company_id": company["id"]})
    )
    deal = made(http.post("/v1/deals", json={"title": "TPS", "company_id": company["id"]}))
    path = f"/v1/companies/{company['id']}"

    r = http.patch(path, json={"name": "Initrode", "domain": None})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["domain"]) == ("Initrode", None)
    # The same values again, and a field given with its current value: nothing changes.
    assert http.patch(path, json={"name": "Initrode"}).status_code == 200
    assert http.patch(path, json={"domain": "initrode.test", "name": "Initrode"}).status_code == 200
    assert http.get(path).json()["domain"] == "initrode.test"

    assert http.delete(path).status_code == 204
    assert http.get(path).status_code == 404
    # What pointed at it stays, without it.
    assert http.get(f"/v1/contacts/{contact['id']}").json()["company_id"] is None
    assert http.get(f"/v1/deals/{deal['id']}").json()["company_id"] is None

    assert events(kit, shop, f"companies/{company['id']}") == [
        (
            "crm.company.created",
            {
                "company_id": company["id"],
                "name": "Initech",
                "domain": "initech.test",
                "created_by": "sam",
            },
        ),
        (
            "crm.company.updated",
            {
                "company_id": company["id"],
                "changes": {
                    "name": {"from": "Initech", "to": "Initrode"},
                    "domain": {"from": "initech.test", "to": None},
                },
                "updated_by": "sam",
            },
        ),
        (
            "crm.company.updated",
            {
                "company_id": company["id"],
                "changes": {"domain": {"from": None, "to": "initrode.test"}},
                "updated_by": "sam",
            },
        ),
        ("crm.company.deleted", {"company_id": company["id"], "deleted_by": "sam"}),
    ]


def test_a_contact_is_updated_and_deleted_with_its_own_activities(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    company = made(http.post("/v1/companies", json={"name": "Globex"}))
    contact = made(http.post("/v1/contacts", json={"first_name": "Hank", "email": "h@x.test"}))
    deal = made(http.post("/v1/deals", json={"title": "Hammock", "contact_id": contact["id"]}))
    alone = made(
        http.post(
            "/v1/activities", json={"kind": "call", "subject": "Hi", "contact_id": contact["id"]}
        )
    )
    shared = made(
        http.post(
            "/v1/activities",
            json={
                "kind": "note",
                "subject": "Both",
                "contact_id": contact["id"],
                "deal_id": deal["id"],
            },
        )
    )
    path = f"/v1/contacts/{contact['id']}"
    r = http.patch(
        path, json={"last_name": "Scorpio", "company_id": company["id"], "email": "h@x.test"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["last_name"], r.json()["company_id"]) == ("Scorpio", company["id"])
    assert http.get("/v1/contacts?q=scorp").json()["total"] == 1

    assert http.delete(path).status_code == 204
    assert http.delete(path).status_code == 404
    assert http.get(f"/v1/deals/{deal['id']}").json()["contact_id"] is None
    left = http.get(f"/v1/activities?deal_id={deal['id']}").json()["items"]
    assert [(a["id"], a["contact_id"]) for a in left] == [(shared["id"], None)]
    assert alone["id"] not in {a["id"] for a in http.get("/v1/activities").json()["items"]}

    assert events(kit, shop, f"contacts/{contact['id']}")[1:] == [
        (
            "crm.contact.updated",
            {
                "contact_id": contact["id"],
                "changes": {
                    "last_name": {"from": "", "to": "Scorpio"},
                    "company_id": {"from": None, "to": company["id"]},
                },
                "updated_by": "sam",
            },
        ),
        ("crm.contact.deleted", {"contact_id": contact["id"], "deleted_by": "sam"}),
    ]


def test_a_deal_is_updated_and_deleted_with_its_own_activities(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    contact = made(http.post("/v1/contacts", json={"first_name": "Milton"}))
    company = made(http.post("/v1/companies", json={"name": "Penetrode"}))
    deal = made(http.post("/v1/deals", json={"title": "Stapler", "amount": "10"}))
    path = f"/v1/deals/{deal['id']}"
    alone = made(
        http.post("/v1/activities", json={"kind": "task", "subject": "x", "deal_id": deal["id"]})
    )
    shared = made(
        http.post(
            "/v1/activities",
            json={
                "kind": "note",
                "subject": "y",
                "contact_id": contact["id"],
                "deal_id": deal["id"],
            },
        )
    )
    r = http.patch(
        path,
        json={
            "title": "Red stapler",
            "amount": "10.00",  # the same amount, written otherwise: not a change
            "currency": "USD",
            "company_id": company["id"],
            "contact_id": contact["id"],
        },
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["title"], changed["amount"], changed["currency"]) == (
        "Red stapler",
        "10.00",
        "USD",
    )
    assert changed["stage_id"] == "lead"
    assert changed["updated_at"] > deal["updated_at"]
    r = http.patch(path, json={"amount": 12.5, "contact_id": None})
    assert (r.json()["amount"], r.json()["contact_id"]) == ("12.50", None)

    assert http.delete(path).status_code == 204
    assert http.get(path).status_code == 404
    left = http.get(f"/v1/activities?contact_id={contact['id']}").json()["items"]
    assert [(a["id"], a["deal_id"]) for a in left] == [(shared["id"], None)]
    assert alone["id"] not in {a["id"] for a in http.get("/v1/activities").json()["items"]}

    assert events(kit, shop, f"deals/{deal['id']}")[1:] == [
        (
            "crm.deal.updated",
            {
                "deal_id": deal["id"],
                "changes": {
                    "title": {"from": "Stapler", "to": "Red stapler"},
                    "currency": {"from": "EUR", "to": "USD"},
                    "company_id": {"from": None, "to": company["id"]},
                    "contact_id": {"from": None, "to": contact["id"]},
                },
                "updated_by": "sam",
            },
        ),
        (
            "crm.deal.updated",
            {
                "deal_id": deal["id"],
                "changes": {
                    "amount": {"from": "10.00", "to": "12.50"},
                    "contact_id": {"from": contact["id"], "to": None},
                },
                "updated_by": "sam",
            },
        ),
        ("crm.deal.deleted", {"deal_id": deal["id"], "deleted_by": "sam"}),
    ]


def _refused(r: httpx.Response, status: int, code: str) -> Any:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]


def test_unknown_ids_bad_references_and_bad_bodies_are_refused(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    nobody = str(uuid.uuid4())
    for kind, body in (
        ("companies", {"name": "x"}),
        ("contacts", {"first_name": "x"}),
        ("deals", {"title": "x"}),
    ):
        _refused(http.patch(f"/v1/{kind}/{nobody}", json=body), 404, "not_found")
        _refused(http.delete(f"/v1/{kind}/{nobody}"), 404, "not_found")
    for kind in ("contacts", "deals"):
        # An unknown id is a 404 even with a bad reference in the body.
        r = http.patch(f"/v1/{kind}/{nobody}", json={"company_id": nobody})
        _refused(r, 404, "not_found")

    contact = made(http.post("/v1/contacts", json={"first_name": "Lumbergh"}))
    deal = made(http.post("/v1/deals", json={"title": "Flair", "contact_id": contact["id"]}))
    c_path, d_path = f"/v1/contacts/{contact['id']}", f"/v1/deals/{deal['id']}"
    err = _refused(http.patch(c_path, json={"company_id": nobody}), 422, "unknown_reference")
    assert err["details"] == {"field": "company_id"}
    err = _refused(http.patch(d_path, json={"contact_id": nobody}), 422, "unknown_reference")
    assert err["details"] == {"field": "contact_id"}
    bad: list[dict[str, Any]] = [
        {},
        {"stage_id": "won"},  # moves have their own route
        {"title": None},
        {"title": ""},
        {"amount": "-1"},
        {"amount": "1.001"},
        {"currency": "eur"},
        {"title": "a\x00b"},
    ]
    for body in bad:
        r = http.patch(d_path, json=body)
        assert r.status_code in (400, 422), (body, r.text)
        assert set(r.json()) == {"error"}
    _refused(http.patch(c_path, json={"first_name": None}), 422, "validation_error")
    _refused(http.patch(c_path, json={"email": "nope"}), 422, "validation_error")
    _refused(http.patch(c_path, content=b"[]"), 422, "validation_error")
    assert http.get(d_path).json()["title"] == "Flair"
    assert http.get(d_path).json()["contact_id"] == contact["id"]
    assert [t for t, _ in events(kit, shop, f"deals/{deal['id']}")] == ["crm.deal.created"]

    with kit.client(shop, roles=["viewer"]) as viewer:
        _refused(viewer.patch(d_path, json={"title": "x"}), 403, "forbidden")
        _refused(viewer.delete(d_path), 403, "forbidden")
    # Another tenant's admin meets the same 404 as for an id that exists nowhere.
    with kit.client(kit.tenant("elsewhere"), roles=["tenant_admin"]) as other:
        _refused(other.patch(d_path, json={"title": "x"}), 404, "not_found")
        _refused(other.delete(c_path), 404, "not_found")
    assert http.get(d_path).json()["title"] == "Flair"
    assert http.get(c_path).status_code == 200
