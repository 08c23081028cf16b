"""The trash (ADR 0236) through the SDK test kit (real local Plexica and PostgreSQL, the plugin
over HTTP): a delete hides a record and the links to it, a restore within 30 days brings all of
it back, and the next delete purges what was deleted 30 days ago or more."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from crm_kit_helpers import events, made

from plexica_sdk.testing import KitTenant, PluginTestKit


@pytest.fixture(scope="module")
def shop(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("trash")


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _ids(r: httpx.Response) -> set[str]:
    return {item["id"] for item in _ok(r)["items"]}


def _not_in_trash(r: httpx.Response) -> None:
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"


def _backdate(kit: PluginTestKit, shop: KitTenant, table: str, id_: str, days: int) -> None:
    asyncio.run(
        kit.fetch(
            f'UPDATE "{shop.schema}".{table} SET deleted_at = now() - make_interval(days => $2)'
            " WHERE id = $1",
            id_,
            days,
        )
    )


def test_a_deleted_contact_is_in_the_trash_and_comes_back_with_its_links(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    company = made(http.post("/v1/companies", json={"name": "Umbrella"}))
    contact = made(
        http.post(
            "/v1/contacts",
            json={"first_name": "Alice", "last_name": "Trashed", "company_id": company["id"]},
        )
    )
    deal = made(http.post("/v1/deals", json={"title": "Hive", "contact_id": contact["id"]}))
    on_contact = {"contact_id": contact["id"]}
    alone, shared = (
        made(http.post("/v1/activities", json={"kind": "note", "subject": "x", **links}))
        for links in (on_contact, {**on_contact, "deal_id": deal["id"]})
    )
    path = f"/v1/contacts/{contact['id']}"
    deal_tag = http.get(f"/v1/deals/{deal['id']}").headers["etag"]

    assert http.delete(path).status_code == 204
    # Gone from everything that reads contacts, as a delete always was.
    assert http.get(path).status_code == 404
    assert contact["id"] not in _ids(http.get("/v1/contacts", params={"limit": 200}))
    assert _ok(http.get("/v1/contacts", params={"q": "trashed"}))["total"] == 0
    assert _ok(http.get("/v1/contacts", params={"company_id": company["id"]}))["total"] == 0
    assert contact["id"] not in http.get("/v1/contacts/export").text
    after = http.get(f"/v1/deals/{deal['id']}")
    assert after.json()["contact_id"] is None
    assert after.headers["etag"] != deal_tag
    assert _ok(http.get("/v1/activities", params={"contact_id": contact["id"]}))["items"] == []
    left = _ok(http.get("/v1/activities", params={"deal_id": deal["id"]}))["items"]
    assert [(a["id"], a["contact_id"]) for a in left] == [(shared["id"], None)]
    assert alone["id"] not in _ids(http.get("/v1/activities", params={"limit": 200}))
    r = http.post(
        "/v1/activities", json={"kind": "note", "subject": "x", "contact_id": contact["id"]}
    )
    assert r.status_code == 422, r.text
    assert http.post(f"/v1/activities/{alone['id']}/done").status_code == 404

    trashed = _ok(http.get("/v1/contacts/trash"))["items"]
    mine = next(t for t in trashed if t["id"] == contact["id"])
    assert (mine["first_name"], mine["deleted_by"], mine["company_id"]) == (
        "Alice",
        "sam",
        company["id"],
    )
    assert mine["deleted_at"]

    r = http.post(f"{path}/restore")
    back = _ok(r)
    assert r.headers["etag"] == f'"{back["version"]}"'
    assert (back["first_name"], back["company_id"]) == ("Alice", company["id"])
    assert _ok(http.get(path)) == back
    assert _ok(http.get(f"/v1/deals/{deal['id']}"))["contact_id"] == contact["id"]
    assert _ids(http.get("/v1/activities", params=on_contact)) == {alone["id"], shared["id"]}
    assert contact["id"] not in _ids(http.get("/v1/contacts/trash"))

    _not_in_trash(http.post(f"{path}/restore"))
    assert [t for t, _ in events(kit, shop, f"contacts/{contact['id']}")] == [
        "crm.contact.created",
        "crm.contact.deleted",
        "crm.contact.restored",
    ]
    assert events(kit, shop, f"contacts/{contact['id']}")[-1][1] == {
        "contact_id": contact["id"],
        "restored_by": "sam",
    }


def test_a_deleted_company_hides_its_links_until_it_is_restored(http: httpx.Client) -> None:
    company = made(http.post("/v1/companies", json={"name": "Cyberdyne"}))
    contact = made(http.post("/v1/contacts", json={"first_name": "Miles", **_at(company)}))
    deal = made(http.post("/v1/deals", json={"title": "Chip", "amount": "5", **_at(company)}))
    path = f"/v1/companies/{company['id']}"
    contact_path = f"/v1/contacts/{contact['id']}"
    tag = http.get(contact_path).headers["etag"]

    assert (
        http.delete(path, headers={"If-Match": http.get(path).headers["etag"]}).status_code == 204
    )
    assert http.get(path).status_code == 404
    assert _ok(http.get("/v1/companies", params={"q": "cyberdyne"}))["total"] == 0
    assert "Cyberdyne" not in http.get("/v1/companies/export").text
    assert "Cyberdyne" not in http.get("/v1/contacts/export").text
    hidden = http.get(contact_path)
    assert hidden.json()["company_id"] is None
    assert hidden.headers["etag"] != tag
    assert _ok(http.get(f"/v1/deals/{deal['id']}"))["company_id"] is None
    r = http.post("/v1/contacts", json={"first_name": "Late", **_at(company)})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "unknown_reference"
    assert company["id"] in _ids(http.get("/v1/companies/trash"))

    back = _ok(http.post(f"{path}/restore"))
    assert back["name"] == "Cyberdyne"
    assert _ok(http.get(contact_path))["company_id"] == company["id"]
    assert _ok(http.get(f"/v1/deals/{deal['id']}"))["company_id"] == company["id"]
    assert _ok(http.get("/v1/contacts", params={"company_id": company["id"]}))["total"] == 1


def test_a_stale_if_match_leaves_the_record_out_of_the_trash(http: httpx.Client) -> None:
    deal = made(http.post("/v1/deals", json={"title": "Stale"}))
    path = f"/v1/deals/{deal['id']}"
    r = http.delete(path, headers={"If-Match": '"0"'})
    assert r.status_code == 412, r.text
    assert r.json()["error"]["code"] == "precondition_failed"
    assert _ok(http.get(path))["title"] == "Stale"
    assert deal["id"] not in _ids(http.get("/v1/deals/trash"))
    _not_in_trash(http.post(f"{path}/restore"))


def test_the_next_delete_purges_what_was_deleted_30_days_ago(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    old = made(http.post("/v1/deals", json={"title": "Old"}))
    recent = made(http.post("/v1/deals", json={"title": "Recent"}))
    note = made(
        http.post("/v1/activities", json={"kind": "task", "subject": "x", "deal_id": old["id"]})
    )
    for deal in (old, recent):
        assert http.delete(f"/v1/deals/{deal['id']}").status_code == 204
    _backdate(kit, shop, "crm_deals", old["id"], 31)
    _backdate(kit, shop, "crm_deals", recent["id"], 29)

    # Past 30 days: no longer listed nor restorable, even before it is purged.
    assert old["id"] not in _ids(http.get("/v1/deals/trash"))
    _not_in_trash(http.post(f"/v1/deals/{old['id']}/restore"))

    other = made(http.post("/v1/companies", json={"name": "Trigger"}))
    assert http.delete(f"/v1/companies/{other['id']}").status_code == 204
    left = asyncio.run(
        kit.fetch(
            f'SELECT id::text FROM "{shop.schema}".crm_deals WHERE id = ANY($1::uuid[])'
            f' UNION ALL SELECT id::text FROM "{shop.schema}".crm_activities WHERE id = $2',
            [old["id"], recent["id"]],
            note["id"],
        )
    )
    assert [r["id"] for r in left] == [recent["id"]]
    assert _ok(http.post(f"/v1/deals/{recent['id']}/restore"))["title"] == "Recent"


def test_another_tenant_neither_sees_nor_restores_it(
    kit: PluginTestKit, http: httpx.Client
) -> None:
    company = made(http.post("/v1/companies", json={"name": "Private"}))
    assert http.delete(f"/v1/companies/{company['id']}").status_code == 204
    with kit.client(kit.tenant("trash-other"), roles=["tenant_admin"]) as other:
        assert company["id"] not in _ids(other.get("/v1/companies/trash"))
        _not_in_trash(other.post(f"/v1/companies/{company['id']}/restore"))
    with kit.client(None) as anonymous:
        assert anonymous.get("/v1/companies/trash").status_code == 401
    assert company["id"] in _ids(http.get("/v1/companies/trash"))


def test_the_trash_takes_the_permission_that_deletes(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    contact = made(http.post("/v1/contacts", json={"first_name": "Viewed"}))
    assert http.delete(f"/v1/contacts/{contact['id']}").status_code == 204
    with kit.client(shop, roles=["viewer"]) as viewer:
        assert viewer.get("/v1/contacts/trash").status_code == 403
        assert viewer.post(f"/v1/contacts/{contact['id']}/restore").status_code == 403
    assert contact["id"] in _ids(http.get("/v1/contacts/trash"))


def _at(company: dict[str, Any]) -> dict[str, str]:
    return {"company_id": company["id"]}
