"""Optimistic concurrency on the CRM's records (ADR 0226) through the SDK test kit (real local
Plexica and PostgreSQL, the plugin over HTTP): the ETag a read or a change answers, and a
PATCH or DELETE with a stale ``If-Match`` refused with 412, changing nothing, announcing
nothing."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httpx
import pytest
from crm_kit_helpers import made

from plexica_sdk.testing import KitTenant, PluginTestKit, together


@pytest.fixture(scope="module")
def shop(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("etags")


def _types(kit: PluginTestKit, shop: KitTenant, subject: str) -> list[str]:
    rows = asyncio.run(
        kit.fetch(
            "SELECT type FROM platform.outbox WHERE tenant_id = $1 AND subject = $2 ORDER BY seq",
            shop.id,
            subject,
        )
    )
    return [r["type"] for r in rows]


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 412, r.text
    assert r.json() == {
        "error": {
            "code": "precondition_failed",
            "message": "the record has changed since it was read (If-Match does not match its ETag)",
            "details": None,
        }
    }


@pytest.mark.parametrize(
    ("plural", "subject", "body", "change"),
    [
        ("companies", "companies", {"name": "Initech"}, {"name": "Initrode"}),
        ("contacts", "contacts", {"first_name": "Peter"}, {"last_name": "Gibbons"}),
        ("deals", "deals", {"title": "TPS"}, {"amount": "12.50"}),
    ],
)
def test_etag_round_trip_and_stale_if_match(
    kit: PluginTestKit,
    shop: KitTenant,
    http: httpx.Client,
    plural: str,
    subject: str,
    body: dict[str, str],
    change: dict[str, str],
) -> None:
    record = made(http.post(f"/v1/{plural}", json=body))
    path = f"/v1/{plural}/{record['id']}"
    read = http.get(path)
    tag = read.headers["etag"]
    assert tag == f'"{record["version"]}"' == '"1"'

    # The current tag: applied, and the answer carries the next one.
    r = http.patch(path, json=change, headers={"If-Match": tag})
    assert r.status_code == 200, r.text
    fresh = r.headers["etag"]
    assert fresh != tag
    assert fresh == http.get(path).headers["etag"] == f'"{r.json()["version"]}"'
    # A PATCH that changes nothing leaves the tag as it is.
    assert http.patch(path, json=change, headers={"If-Match": fresh}).headers["etag"] == fresh

    # The tag read before the change is stale: 412, the record and its events as they were.
    before = http.get(path).json()
    events = _types(kit, shop, f"{subject}/{record['id']}")
    other = {k: f"{v}0" if k != "amount" else "99.00" for k, v in change.items()}
    _refused(http.patch(path, json=other, headers={"If-Match": tag}))
    _refused(http.patch(path, json=other, headers={"If-Match": f"W/{fresh}"}))
    _refused(http.patch(path, json=other, headers={"If-Match": "not-a-tag"}))
    _refused(http.delete(path, headers={"If-Match": tag}))
    assert http.get(path).json() == before
    assert _types(kit, shop, f"{subject}/{record['id']}") == events

    # Any of a list, or "*", matches; without If-Match the request applies as before.
    r = http.patch(path, json=other, headers={"If-Match": f'"0", {fresh}'})
    assert r.status_code == 200, r.text
    assert http.patch(path, json=change, headers={"If-Match": "*"}).status_code == 200
    assert http.patch(path, json=other).status_code == 200
    assert (
        http.delete(path, headers={"If-Match": http.get(path).headers["etag"]}).status_code == 204
    )
    # Gone: 404 whatever If-Match says.
    assert http.delete(path, headers={"If-Match": "*"}).status_code == 404
    assert _types(kit, shop, f"{subject}/{record['id']}")[-1].endswith(".deleted")


def test_changes_the_crm_makes_itself_change_the_tag(http: httpx.Client) -> None:
    """A stage move and a reference cleared by a delete change the record too: a client
    holding the tag from before must not overwrite the change unknowingly."""
    company = made(http.post("/v1/companies", json={"name": "Hooli"}))
    contact = made(http.post("/v1/contacts", json={"first_name": "Gavin", **_at(company)}))
    deal = made(http.post("/v1/deals", json={"title": "Box", **_at(company)}))
    deal_tag = http.get(f"/v1/deals/{deal['id']}").headers["etag"]
    contact_tag = http.get(f"/v1/contacts/{contact['id']}").headers["etag"]

    assert http.post(f"/v1/deals/{deal['id']}/stage", json={"stage_id": "won"}).status_code == 200
    assert http.delete(f"/v1/companies/{company['id']}").status_code == 204

    _refused(http.patch(f"/v1/deals/{deal['id']}", json={"title": "x"}, headers=_if(deal_tag)))
    _refused(
        http.patch(f"/v1/contacts/{contact['id']}", json={"phone": "1"}, headers=_if(contact_tag))
    )
    assert http.get(f"/v1/contacts/{contact['id']}").headers["etag"] != contact_tag


def test_parallel_conditional_patches_one_wins(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    """Eight PATCHes with the same tag at once: the row lock orders them, the first applies and
    the other seven find the tag stale."""
    contact = made(http.post("/v1/contacts", json={"first_name": "Race"}))
    path = f"/v1/contacts/{contact['id']}"
    tag = http.get(path).headers["etag"]

    def patch(n: int) -> int:
        with kit.client(shop, roles=["member"]) as c:
            return c.patch(path, json={"last_name": f"N{n}"}, headers=_if(tag)).status_code

    codes = together([functools.partial(patch, n) for n in range(8)])
    assert sorted(codes) == [200] + [412] * 7


def _at(company: dict[str, Any]) -> dict[str, str]:
    return {"company_id": company["id"]}


def _if(tag: str) -> dict[str, str]:
    return {"If-Match": tag}
