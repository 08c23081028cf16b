"""CRM and Billing together, as in ``plexica up``: both mounted in-process behind the embedded
gateway, events delivered by the core's event runtime through the queue in a real PostgreSQL.
A deal won in CRM becomes a draft invoice in Billing; uninstalling CRM leaves Billing working."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from plexica.app import create_app
from plexica.events.runtime import plugin_event_buses
from plexica.gateway.embedded import create_edge_app
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.plugins.gate import InstallationGate
from plexica.plugins.service import HttpReadinessProbe
from plexica.settings import Settings
from plexica.web.app import create_web_app
from plexica_billing.app import create_app as create_billing_app
from plexica_billing.app import plugin_root as billing_root
from plexica_crm.app import create_app as create_crm_app
from plexica_sdk.app import PluginConfig
from plexica_sdk.manifest import Manifest
from tests.conftest import running
from tests.plugins.conftest import TenantFactory, register_dir
from tests.support.tokens import StaticIssuers

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"
BILLING = "/api/plugins/billing/v1"


async def test_won_deal_is_invoiced_paid_and_billing_outlives_crm(
    settings: Settings,
    db: Database,
    database_url: str,
    issuers: StaticIssuers,
    crm_manifest: Manifest,
    make_tenant: TenantFactory,
) -> None:
    await register_dir(db, billing_root())
    config = PluginConfig(database_url=database_url, verifier=issuers.verifier())
    plugins = {"crm": create_crm_app(config), "billing": create_billing_app(config)}
    core = create_app(
        settings, db=db, verifier=issuers.verifier(), event_buses=plugin_event_buses(plugins)
    )
    state_of(core).plugin_endpoints = dict(plugins)
    state_of(core).plugin_probe = HttpReadinessProbe(dict(plugins), timeout=1.0)
    edge = create_edge_app(core, create_web_app(settings), plugins, InstallationGate(core))
    tenant = await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    async for http in running(edge):
        for plugin in ("crm", "billing"):
            r = await http.post(
                f"{CORE}/tenants/{tenant.id}/plugins", json={"plugin_id": plugin}, headers=admin
            )
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "active", r.text
        company = (
            await http.post(f"{CRM}/companies", json={"name": "Umbrella"}, headers=admin)
        ).json()
        deal = (
            await http.post(
                f"{CRM}/deals",
                json={"title": "Umbrella pilot", "amount": "4200.00", "company_id": company["id"]},
                headers=admin,
            )
        ).json()
        # Won from eight places at once: one crm.deal.won, one invoice.
        moves = await asyncio.gather(
            *(
                http.post(
                    f"{CRM}/deals/{deal['id']}/stage", json={"stage_id": "won"}, headers=admin
                )
                for _ in range(8)
            )
        )
        assert [r.status_code for r in moves] == [200] * 8, [r.text for r in moves]

        drafts: list[dict[str, object]] = []
        for _ in range(500):
            drafts = (await http.get(f"{BILLING}/invoices?status=draft", headers=admin)).json()[
                "items"
            ]
            if drafts:
                break
            await asyncio.sleep(0.04)
        assert len(drafts) == 1, "the deal was not invoiced"
        invoice = drafts[0]
        assert (invoice["total"], invoice["crm_deal_id"]) == ("4200.00", deal["id"])
        customer = (
            await http.get(f"{BILLING}/customers/{invoice['customer_id']}", headers=admin)
        ).json()
        assert (customer["name"], customer["crm_company_id"]) == ("Umbrella", company["id"])

        issued = (
            await http.post(f"{BILLING}/invoices/{invoice['id']}/issue", headers=admin)
        ).json()
        assert issued["status"] == "open"
        r = await http.post(
            f"{BILLING}/invoices/{invoice['id']}/payments",
            json={"amount": "4200.00"},
            headers=admin,
        )
        assert r.status_code == 201, r.text

        r = await http.delete(f"{CORE}/tenants/{tenant.id}/plugins/crm", headers=admin)
        assert r.status_code in (200, 204), r.text
        assert (await http.get(f"{CRM}/deals", headers=admin)).status_code == 404
        paid = await http.get(f"{BILLING}/invoices?status=paid", headers=admin)
        assert paid.json()["total"] == 1
        assert (await http.get(f"{BILLING}/metrics", headers=admin)).json()["open_invoices"] == 0

    async with db.session() as s:
        types = (
            (
                await s.execute(
                    text(
                        "SELECT type FROM platform.outbox WHERE tenant_id = :t"
                        " AND source = '/plugins/billing' ORDER BY seq"
                    ),
                    {"t": tenant.id},
                )
            )
            .scalars()
            .all()
        )
        won = (
            await s.execute(
                text(
                    "SELECT count(*) FROM platform.outbox WHERE tenant_id = :t"
                    " AND type = 'crm.deal.won'"
                ),
                {"t": tenant.id},
            )
        ).scalar_one()
    assert list(types) == [
        "billing.invoice.created",
        "billing.invoice.issued",
        "billing.invoice.paid",
    ]
    assert won == 1


def test_billing_manifest() -> None:
    from plexica_billing.app import manifest

    m = manifest()
    assert (m.id, m.version, m.base_path) == ("billing", "1.5.0", "/api/plugins/billing")
    assert [(d.id, d.optional) for d in m.dependencies] == [("crm", True)]
    assert {e.type for e in m.events.consumes} == {"crm.deal.won"}
    assert {e.type for e in m.events.emits} == {
        "billing.customer.created",
        "billing.customer.updated",
        "billing.customer.deleted",
        "billing.plan.created",
        "billing.plan.updated",
        "billing.plan.deleted",
        "billing.invoice.created",
        "billing.invoice.updated",
        "billing.invoice.voided",
        "billing.invoice.marked_uncollectible",
        "billing.invoice.issued",
        "billing.invoice.paid",
        "billing.subscription.changed",
        "billing.credit_note.issued",
    }
    assert "billing:payment:write" not in m.default_permissions(frozenset({"member"}))
    assert "billing:invoice:write" in m.default_permissions(frozenset({"member"}))
    assert "billing:invoice:read" in m.default_permissions(frozenset({"viewer"}))
    props = m.settings_schema["properties"]
    assert {"invoice_prefix", "default_currency", "tax_rate", "payment_terms_days"} <= set(props)
