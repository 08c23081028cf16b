"""A tenant installs the CRM, uses it, disables, re-enables, uninstalls, restores and purges it,
through the embedded gateway (CRM mounted in-process) on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from plexica.kit.db import Database
from plexica_sdk.db import plugin_role
from tests.conftest import error_of
from tests.plugins.conftest import Platform, TenantFactory

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"


async def _outbox(db: Database, tenant_id: object) -> list[tuple[str, str]]:
    async with db.session() as s:
        rows = await s.execute(
            text("SELECT type, source FROM platform.outbox WHERE tenant_id = :t ORDER BY seq"),
            {"t": tenant_id},
        )
        return [(r.type, r.source) for r in rows]


async def _consumer(db: Database, tenant_id: object) -> bool | None:
    """Whether the CRM receives the tenant's events (None: not registered at all)."""
    async with db.session() as s:
        row = await s.execute(
            text(
                "SELECT active FROM platform.event_consumers"
                " WHERE plugin_id = 'crm' AND tenant_id = :t"
            ),
            {"t": tenant_id},
        )
        value = row.scalar_one_or_none()
        return None if value is None else bool(value)


async def test_crm_lifecycle_for_one_tenant_only(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    http = platform.http
    a, b = await make_tenant(), await make_tenant()
    admin_a, member_a = a.headers("tenant_admin"), a.headers("member", sub="alice")
    member_b = b.headers("member")
    unknown = await http.get("/api/plugins/nothing/v1/contacts", headers=member_a)
    assert unknown.status_code == 404

    # Before the install the CRM is invisible to tenant A too.
    assert (await http.get(f"{CRM}/contacts", headers=member_a)).json() == unknown.json()

    r = await http.post(
        f"{CORE}/tenants/{a.id}/plugins", json={"plugin_id": "crm"}, headers=admin_a
    )
    assert r.status_code == 201, r.text
    installed = r.json()
    assert installed["status"] == "active"
    assert installed["version"] == "1.4.0"
    assert installed["applied_migrations"] == [
        "0001_init",
        "0002_contact_search",
        "0003_activities_outlive_one_link",
        "0004_record_versions",
        "0005_trash",
    ]

    # A member of A uses the API; the event goes to the outbox in the same transaction.
    r = await http.post(
        f"{CRM}/contacts",
        json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
        headers=member_a,
    )
    assert r.status_code == 201, r.text
    contact = r.json()
    listing = (await http.get(f"{CRM}/contacts?q=love", headers=member_a)).json()
    assert [c["id"] for c in listing["items"]] == [contact["id"]]
    assert ("crm.contact.created", "/plugins/crm") in await _outbox(db, a.id)
    assert await _consumer(db, a.id) is True

    # Tenant B: the same 404 as an unknown route, also its admin on A's installations.
    r = await http.get(f"{CRM}/contacts", headers=member_b)
    assert r.status_code == 404
    assert r.json() == unknown.json()
    r = await http.get(f"{CORE}/tenants/{a.id}/plugins", headers=b.headers("tenant_admin"))
    assert r.status_code == 404
    # A member (not admin) of A cannot install or disable.
    r = await http.post(f"{CORE}/tenants/{a.id}/plugins/crm/disable", headers=member_a)
    assert r.status_code == 404

    # Disable: traffic stops at once, through the gateway and at the plugin itself.
    r = await http.post(f"{CORE}/tenants/{a.id}/plugins/crm/disable", headers=admin_a)
    assert r.json()["status"] == "disabled"
    assert await _consumer(db, a.id) is False
    assert (await http.get(f"{CRM}/contacts", headers=member_a)).status_code == 404
    import httpx

    direct = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=platform.crm), base_url="http://crm"
    )
    async with direct:
        r = await direct.get("/v1/contacts", headers=member_a)
        assert r.status_code == 404
        assert error_of(r)["code"] == "not_found"

    # Re-enable: the data is intact.
    r = await http.post(f"{CORE}/tenants/{a.id}/plugins/crm/enable", headers=admin_a)
    assert r.json()["status"] == "active"
    listing = (await http.get(f"{CRM}/contacts", headers=member_a)).json()
    assert listing["total"] == 1

    # Uninstall keeps the data for the retention window; reinstalling restores it.
    r = await http.delete(f"{CORE}/tenants/{a.id}/plugins/crm", headers=admin_a)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "uninstalled"
    retain = datetime.fromisoformat(body["retain_until"])
    assert timedelta(days=29) < retain - datetime.now(UTC) <= timedelta(days=30)
    assert (await http.get(f"{CRM}/contacts", headers=member_a)).status_code == 404
    r = await http.post(
        f"{CORE}/tenants/{a.id}/plugins", json={"plugin_id": "crm"}, headers=admin_a
    )
    assert r.status_code == 201, r.text
    assert (await http.get(f"{CRM}/contacts", headers=member_a)).json()["total"] == 1

    # Purge: tables and role are gone, the tenant is as before.
    r = await http.delete(f"{CORE}/tenants/{a.id}/plugins/crm?purge=true", headers=admin_a)
    assert r.status_code == 204
    async with db.session() as s:
        tables = await s.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": a.ref.schema}
        )
        assert tables.scalar_one() == 0
        role = await s.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": plugin_role("crm", a.id)}
        )
        assert role.scalar() is None
    r = await http.get(f"{CORE}/tenants/{a.id}/plugins/crm", headers=admin_a)
    assert r.status_code == 404
    assert await _consumer(db, a.id) is None
    core_events = [t for t, _ in await _outbox(db, a.id) if t.startswith("plexica.plugin.")]
    assert core_events == [
        "plexica.plugin.installed",
        "plexica.plugin.disabled",
        "plexica.plugin.enabled",
        "plexica.plugin.uninstalled",
        "plexica.plugin.installed",
        "plexica.plugin.uninstalled",
    ]


async def test_deals_pipeline_events_and_permissions(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    http = platform.http
    t = await make_tenant()
    r = await http.post(
        f"{CORE}/tenants/{t.id}/plugins",
        json={"plugin_id": "crm", "settings": {"currency": "CHF", "page_size": 5}},
        headers=t.headers("tenant_admin"),
    )
    assert r.status_code == 201, r.text
    member, viewer = t.headers("member"), t.headers("viewer")

    company = (await http.post(f"{CRM}/companies", json={"name": "Acme"}, headers=member)).json()
    contact = (
        await http.post(
            f"{CRM}/contacts",
            json={"first_name": "Bob", "company_id": company["id"]},
            headers=member,
        )
    ).json()
    r = await http.post(
        f"{CRM}/deals",
        json={"title": "Big deal", "amount": "1200.50", "contact_id": contact["id"]},
        headers=member,
    )
    assert r.status_code == 201, r.text
    deal = r.json()
    assert deal["currency"] == "CHF"  # from the tenant's settings
    assert deal["stage_id"] == "lead"

    r = await http.post(f"{CRM}/deals/{deal['id']}/stage", json={"stage_id": "won"}, headers=member)
    assert r.status_code == 200
    assert r.json()["closed_at"] is not None
    types = [t for t, _ in await _outbox(db, t.id) if not t.startswith("plexica.")]
    assert types == [
        "crm.company.created",
        "crm.contact.created",
        "crm.deal.created",
        "crm.deal.stage_changed",
        "crm.deal.won",
    ]

    r = await http.post(
        f"{CRM}/activities",
        json={"kind": "call", "subject": "Kick-off", "deal_id": deal["id"]},
        headers=member,
    )
    assert r.status_code == 201, r.text
    r = await http.post(f"{CRM}/activities", json={"kind": "note", "subject": "x"}, headers=member)
    assert r.status_code == 422

    # The viewer reads but does not write; an unknown reference is a 422, not a 500.
    assert (await http.get(f"{CRM}/deals", headers=viewer)).json()["total"] == 1
    r = await http.post(f"{CRM}/companies", json={"name": "Nope"}, headers=viewer)
    assert r.status_code == 403
    assert error_of(r)["code"] == "forbidden"
    r = await http.post(
        f"{CRM}/contacts",
        json={"first_name": "X", "company_id": "00000000-0000-0000-0000-000000000000"},
        headers=member,
    )
    assert error_of(r)["code"] == "unknown_reference"

    # Pagination and search.
    for i in range(7):
        await http.post(
            f"{CRM}/contacts", json={"first_name": f"P{i}", "last_name": "Page"}, headers=member
        )
    page = (await http.get(f"{CRM}/contacts?q=page&limit=5&offset=5", headers=member)).json()
    assert (page["total"], len(page["items"]), page["offset"]) == (7, 2, 5)

    # HTML fragments for the web shell, escaped and paged by the tenant's setting.
    await http.post(f"{CRM}/contacts", json={"first_name": "<script>"}, headers=member)
    html = (await http.get("/api/plugins/crm/ui/contacts", headers=member)).text
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert html.count("<tr data-contact=") == 5
    deal_html = (await http.get(f"/api/plugins/crm/ui/deals/{deal['id']}", headers=member)).text
    assert "Big deal" in deal_html
    assert "Kick-off" in deal_html
    board = (await http.get("/api/plugins/crm/ui/deals", headers=member)).text
    assert 'data-stage="won"' in board

    # Settings are validated against the manifest's schema and change nothing when bad.
    r = await http.put(
        f"{CORE}/tenants/{t.id}/plugins/crm/settings",
        json={"settings": {"currency": "euro"}},
        headers=t.headers("tenant_admin"),
    )
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_settings"
    assert err["details"][0]["path"] == "currency"
    r = await http.get(f"{CORE}/tenants/{t.id}/plugins/crm", headers=t.headers("tenant_admin"))
    assert r.json()["settings"] == {"currency": "CHF", "page_size": 5}


async def test_operator_manages_any_tenant_and_the_catalog(
    platform: Platform, make_tenant: TenantFactory, issuers: object
) -> None:
    from tests.support.tokens import StaticIssuers

    assert isinstance(issuers, StaticIssuers)
    http, op = platform.http, issuers.operator_headers()
    t = await make_tenant()
    r = await http.post(
        f"{CORE}/tenants/{t.id}/plugins",
        json={"plugin_id": "crm"},
        headers=t.headers("tenant_admin"),
    )
    assert r.status_code == 201
    r = await http.get(f"{CORE}/tenants/{t.id}/plugins", headers=op)
    assert [i["plugin_id"] for i in r.json()] == ["crm"]
    r = await http.get(f"{CORE}/plugins/crm/versions", headers=op)
    assert "1.4.0" in [v["version"] for v in r.json()]
    # Members see only published versions; catalog writes need the operator.
    r = await http.post(f"{CORE}/plugins", json={"manifest": {}}, headers=t.headers("tenant_admin"))
    assert r.status_code == 403
