"""A tenant's admin installs and upgrades plugins from the catalog on the Plugins page with one
click each, no plugin id typed (ADR 0241); in real headless Chromium against ``plexica up``."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, expect

from plexica.kit.db import Database
from plexica.kit.state import state_of
from tests.plugins.conftest import bare_app, plugin_doc, register_doc
from tests.web.conftest import Operator, Site, set_password
from tests.web.test_browser import shot
from tests.web.test_browser_flows import ready_tenant, tenant_login


async def test_a_tenant_admin_installs_and_upgrades_from_the_catalog(
    chromium: Browser,
    site: Site,
    db: Database,
    operator: Operator,
    crm_published: None,
    billing_published: None,
) -> None:
    gadget = f"gd{uuid.uuid4().hex[:8]}"
    name = f"Gadget {gadget}"
    manifest = await register_doc(db, plugin_doc(gadget, name=name), [])
    state_of(site.core).plugin_endpoints[gadget] = bare_app(manifest)
    slug = await ready_tenant(chromium, site, operator, "cat", "Catalog Co")
    password = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")
    context = await chromium.new_context()
    me = await tenant_login(context, site, slug, f"admin@{slug}.example", password)

    await me.get_by_role("link", name="Plugins").click()
    catalog = me.get_by_role("table", name="Plugin catalog")
    for shown in ("CRM", "Billing", name):
        await expect(catalog.get_by_role("rowheader", name=shown, exact=True)).to_be_visible()
    await expect(me.get_by_role("table", name="Installed plugins")).to_contain_text(
        "No plugins installed."
    )
    await shot(me, "tenant-plugin-catalog")

    await me.get_by_role("button", name="Install Billing", exact=True).click()
    await expect(me.get_by_role("status")).to_contain_text("Plugin billing installed.")
    installed = me.get_by_role("table", name="Installed plugins")
    billing = installed.get_by_role("row").filter(
        has=me.get_by_role("cell", name="billing", exact=True)
    )
    await expect(billing).to_contain_text("active")
    billing_offer = catalog.get_by_role("row").filter(
        has=me.get_by_role("rowheader", name="Billing", exact=True)
    )
    await expect(billing_offer).to_contain_text("Up to date")
    await expect(me.get_by_role("link", name="Invoices")).to_be_visible()

    await me.get_by_role("button", name=f"Install {name}", exact=True).click()
    await expect(me.get_by_role("status")).to_contain_text(f"Plugin {gadget} installed.")
    await register_doc(db, plugin_doc(gadget, "1.1.0", name=name), [])
    await me.get_by_role("link", name="Plugins").click()
    await me.get_by_role("button", name=f"Upgrade {name} to 1.1.0", exact=True).click()
    await expect(me.get_by_role("status")).to_contain_text(f"Plugin {gadget} upgraded to 1.1.0.")
    row = installed.get_by_role("row").filter(has=me.get_by_role("cell", name=gadget, exact=True))
    await expect(row).to_contain_text("1.1.0")
    offer = catalog.get_by_role("row").filter(
        has=me.get_by_role("rowheader", name=name, exact=True)
    )
    await expect(offer).to_contain_text("Up to date")
    await context.close()
