"""What a plugin does is in the tenant's audit log (ADR 0238), and who installed it (ADR 0239):
every event a plugin publishes is an entry written by the platform's function in the same
transaction, naming the user of the request, its request id and the event's subject; nothing of
it is seen from another tenant."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from plexica.audit import service as audit
from plexica.audit.schemas import AuditFilter, TextMatch
from plexica.kit.db import Database
from plexica_sdk.context import SUPER_ADMIN, Principal
from plexica_sdk.db import plugin_role, publish_function
from tests.plugins.conftest import Platform, TenantFactory, plugin_doc
from tests.support.tokens import StaticIssuers

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"
BILLING = "/api/plugins/billing/v1"


async def _post(http: httpx.AsyncClient, path: str, body: object, headers: dict[str, str]) -> Any:
    r = await http.post(path, json=body, headers=headers)
    assert r.status_code in {200, 201}, r.text
    return r


async def _audit(
    db: Database, tenant: uuid.UUID, action: str | None = None, target: str | None = None
) -> list[dict[str, Any]]:
    """The log as the tenant's admin reads it (the API's query; the tokens of these tests carry
    no permissions, the route is tested in tests/identity)."""
    reader = Principal(subject="reader", issuer="test", tenant_id=tenant)
    where = AuditFilter(action=TextMatch.of(action), target=TextMatch.of(target))
    async with db.session() as s:
        page = await audit.query(s, reader, where=where)
    return [e.model_dump(mode="json") for e in page.items]


async def test_a_deal_won_billed_and_paid_is_in_the_audit_log(
    billing_platform: Platform, db: Database, make_tenant: TenantFactory
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    http = billing_platform.http
    for plugin in ("crm", "billing"):
        await _post(http, f"{CORE}/tenants/{tenant.id}/plugins", {"plugin_id": plugin}, admin)

    company = (await _post(http, f"{CRM}/companies", {"name": "Umbrella"}, admin)).json()
    deal = (
        await _post(http, f"{CRM}/deals", {"title": "Pilot", "company_id": company["id"]}, admin)
    ).json()
    won = await _post(http, f"{CRM}/deals/{deal['id']}/stage", {"stage_id": "won"}, admin)
    customer = (await _post(http, f"{BILLING}/customers", {"name": "Umbrella"}, admin)).json()
    lines = [{"description": "Pilot", "quantity": "1", "unit_price": "4200.00"}]
    invoice = (
        await _post(http, f"{BILLING}/invoices", {"customer_id": customer["id"], "lines": lines},
                    admin)
    ).json()  # fmt: skip
    issued = (await _post(http, f"{BILLING}/invoices/{invoice['id']}/issue", None, admin)).json()
    await _post(
        http, f"{BILLING}/invoices/{invoice['id']}/payments", {"amount": issued["amount_due"]},
        admin,
    )  # fmt: skip

    crm = await _audit(db, tenant.id, action="crm.*")
    assert [e["action"] for e in reversed(crm)] == [
        "crm.company.created", "crm.deal.created", "crm.deal.stage_changed", "crm.deal.won",
    ]  # fmt: skip
    entry = next(e for e in crm if e["action"] == "crm.deal.won")
    assert entry["tenant_id"] == str(tenant.id)
    assert entry["actor"] == "ada"
    assert entry["target"] == f"deals/{deal['id']}"
    assert entry["after"]["deal_id"] == deal["id"]
    assert entry["request_id"] == won.headers["x-request-id"]

    installs = await _audit(db, tenant.id, action="plugin.*")
    assert sorted((e["action"], e["target"], e["actor"]) for e in installs) == [
        ("plugin.installed", "plugin:billing", "ada"), ("plugin.installed", "plugin:crm", "ada"),
    ]  # fmt: skip
    billing = {e["action"] for e in await _audit(db, tenant.id, action="billing.invoice.*")}
    assert {"billing.invoice.created", "billing.invoice.issued", "billing.invoice.paid"} <= billing
    # Another tenant's admin sees none of it, even asking by target.
    assert await _audit(db, other.id, action="crm.*") == []
    assert await _audit(db, other.id, target=f"deals/{deal['id']}") == []
    await _refused_as_the_plugin(db, tenant.id, tenant.ref.schema)


async def _refused_as_the_plugin(db: Database, tenant_id: uuid.UUID, schema: str) -> None:
    """The plugin's own role can neither write the log directly nor, through the function, an
    action outside its namespace: the refused call leaves no entry."""
    role = plugin_role("crm", tenant_id)
    attempts = (
        "INSERT INTO platform.audit_log (id, actor, action, tenant_id)"
        f" VALUES (uuidv7(), 'x', 'tenant.deleted', '{tenant_id}')",
        f"SELECT \"{schema}\".{publish_function('crm')}('tenant.deleted', NULL, '{{}}')",
    )
    for sql in attempts:
        with pytest.raises(DBAPIError, match=r"permission denied|must start with"):
            async with db.session() as s:
                await s.execute(text(f'SET LOCAL ROLE "{role}"'))
                await s.execute(text(sql))
    async with db.session() as s:
        forged = await s.execute(
            text("SELECT count(*) FROM platform.audit_log WHERE action = 'tenant.deleted'"
                 " AND tenant_id = :t"), {"t": tenant_id},
        )  # fmt: skip
        assert forged.scalar_one() == 0


async def test_the_catalog_s_register_publish_and_deprecate_are_audited(
    platform: Platform, db: Database, issuers: StaticIssuers
) -> None:
    op = issuers.operator_headers()
    plugin_id = "au" + uuid.uuid4().hex[:8]
    made = await platform.http.post(
        f"{CORE}/plugins", json={"manifest": plugin_doc(plugin_id)}, headers=op
    )
    assert made.status_code == 201, made.text
    for step in ("publish", "deprecate"):
        r = await platform.http.post(
            f"{CORE}/plugins/{plugin_id}/versions/1.0.0/{step}", headers=op
        )
        assert r.status_code == 200, r.text
    reader = Principal(subject="ops", issuer="test", roles=frozenset({SUPER_ADMIN}))
    async with db.session() as s:
        page = await audit.query(
            s, reader, where=AuditFilter(target=TextMatch(f"plugin:{plugin_id}"))
        )
    entries = list(reversed(page.items))
    assert [e.action for e in entries] == [
        "plugin.registered", "plugin.published", "plugin.deprecated"
    ]  # fmt: skip
    assert entries[2].before == {"version": "1.0.0", "status": "published"}
    assert "platform" not in {e.actor for e in entries}
