"""Console, CRM and Billing flows in real headless Chromium (Playwright, Debian's chromium) against
the running platform: live provisioning progress (with and without JavaScript), the CRM's forms
and deals board as a tenant user, the feature flags page, an invoice issued and paid, and a
subscription set to end with its period, then kept."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.kit.state import started, state_of
from tests.web.conftest import ARGS, CHROMIUM, Operator, Site, add_user, set_password
from tests.web.test_browser import provider_login, shot

GATE = "compliance_check"


@dataclass
class GateStep:
    """A real last provisioning step of the running platform: it takes a moment for slugs
    starting with ``slow`` or ``fail`` and fails the first time for ``fail...`` tenants, so that
    the progress page has something to show; it does nothing for every other tenant."""

    name: str = GATE
    refused: set[str] = field(default_factory=set)

    async def apply(self, tenant: TenantRef) -> None:
        if tenant.slug.startswith(("slow", "fail")):
            await asyncio.sleep(2.5)
        if tenant.slug.startswith("fail") and tenant.slug not in self.refused:
            self.refused.add(tenant.slug)
            raise RuntimeError("the compliance service refused this tenant")

    async def undo(self, tenant: TenantRef) -> None:
        return None

    async def purge(self, tenant: TenantRef) -> None:
        return None


@pytest.fixture(scope="session")
def gate(site: Site) -> GateStep:
    steps = started(state_of(site.core).services, "services").tenants.steps
    found = next((s for s in steps if isinstance(s, GateStep)), None)
    if found is None:
        found = GateStep()
        steps.append(found)
    return found


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def operator_console(context: BrowserContext, site: Site, operator: Operator) -> Page:
    page = await context.new_page()
    await page.goto(site.url + "/login")
    await page.get_by_role("link", name="Sign in to the operator console").click()
    await provider_login(page, operator.email, operator.password)
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    return page


async def create_tenant(page: Page, slug: str, name: str) -> None:
    await page.goto(page.url.split("/console/")[0] + "/console/tenants")
    await page.get_by_label("Slug").fill(slug)
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Admin email").fill(f"admin@{slug}.example")
    await page.get_by_role("button", name="Create tenant").click()


async def test_provisioning_progress_advances_live_without_a_reload(
    chromium: Browser, site: Site, operator: Operator, gate: GateStep
) -> None:
    context = await chromium.new_context()
    page = await operator_console(context, site, operator)
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    await create_tenant(page, slug, "Live Co")
    await expect(page).to_have_url(f"{site.url}/console/provisioning/{slug}")
    # A mark on this document: it survives only if the page is never reloaded.
    await page.evaluate("window.__sameDocument = true")
    running = page.locator(f'[data-step="{GATE}"][data-status="running"]')
    await expect(running).to_be_visible()
    await expect(page.locator('[data-step="schema"][data-status="done"]')).to_be_visible()
    await expect(page.get_by_text("Step 5 of 5: Compliance check")).to_be_visible()
    await shot(page, "console-provisioning-running")
    await expect(page.get_by_role("status")).to_contain_text(
        f"Tenant {slug} created. It is ready.", timeout=10_000
    )
    assert await page.evaluate("window.__sameDocument === true")
    statuses = await page.locator(".px-step").evaluate_all(
        "els => els.map(e => e.dataset.step + ':' + e.dataset.status)"
    )
    assert statuses == [
        "schema:done", "identity_realm:done", "bucket:done", "admin_invite:done",
        f"{GATE}:done", "event:done",
    ]  # fmt: skip
    await expect(page.get_by_text("Event plexica.tenant.provisioned")).to_be_visible()
    await shot(page, "console-provisioning-ready")
    await page.get_by_role("link", name="Back to tenants").click()
    # The list is paged by slug and the suite's database holds hundreds of tenants: start the
    # list just before this one.
    await page.get_by_label("Start after").fill("slow-")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("link", name=slug)).to_be_visible()
    await context.close()


async def test_a_failed_step_shows_its_error_and_the_compensation(
    chromium: Browser, site: Site, operator: Operator, gate: GateStep
) -> None:
    context = await chromium.new_context()
    page = await operator_console(context, site, operator)
    slug = f"fail-{uuid.uuid4().hex[:8]}"
    await create_tenant(page, slug, "Doomed Co")
    await expect(page.locator(f'[data-step="{GATE}"][data-status="running"]')).to_be_visible()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text(
        "Provisioning failed at step Compliance check: RuntimeError", timeout=10_000
    )
    await expect(page.get_by_role("cell", name="failed", exact=True)).to_be_visible()
    await expect(alert).to_contain_text("the compliance service refused this tenant")
    gate_row = page.locator(f'[data-step="{GATE}"]')
    await expect(gate_row).to_contain_text("the compliance service refused this tenant")
    for step in ("schema", "identity_realm", "bucket", "admin_invite", GATE):
        await expect(page.locator(f'[data-step="{step}"][data-status="undone"]')).to_be_visible()
    await expect(page.get_by_text("Compensation:")).to_contain_text(
        "Database schema, Identity realm and admin user, Storage bucket,"
        " Invitation of the first admin, Compliance check undone"
    )
    await expect(page.get_by_text("Event plexica.tenant.failed")).to_be_visible()
    await shot(page, "console-provisioning-failed")
    await page.goto(f"{site.url}/console/tenants?state=failed")
    await expect(page.get_by_role("link", name=slug)).to_be_visible()

    # The operator runs it again: the same live page, this time to the end.
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=slug))
    await row.get_by_role("link", name="Provisioning").click()
    await expect(page).to_have_url(f"{site.url}/console/provisioning/{slug}")
    await page.get_by_role("button", name="Retry provisioning").click()
    await expect(page.locator(f'[data-step="{GATE}"][data-status="running"]')).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text(
        f"Tenant {slug} created. It is ready.", timeout=10_000
    )
    await context.close()


async def test_without_javascript_the_progress_page_refreshes_itself(
    chromium: Browser, site: Site, operator: Operator, gate: GateStep
) -> None:
    context = await chromium.new_context(java_script_enabled=False)
    page = await operator_console(context, site, operator)
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    await create_tenant(page, slug, "Plain Co")
    await expect(page).to_have_url(f"{site.url}/console/provisioning/{slug}")
    await expect(page.locator(f'[data-step="{GATE}"][data-status="running"]')).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text(
        f"Tenant {slug} created. It is ready.", timeout=10_000
    )
    await context.close()


async def test_operator_manages_feature_flags_and_the_audit_log_shows_it(
    chromium: Browser, site: Site, operator: Operator
) -> None:
    context = await chromium.new_context()
    page = await operator_console(context, site, operator)
    tenant = f"flag-{uuid.uuid4().hex[:8]}"
    await create_tenant(page, tenant, "Flag Co")
    await expect(page.get_by_role("status")).to_contain_text("It is ready.", timeout=10_000)

    key = f"web.flows_{uuid.uuid4().hex[:8]}"
    await page.get_by_role("link", name="Feature flags").click()
    await expect(page.get_by_role("heading", name="Feature flags")).to_be_visible()
    await page.get_by_label("Key").fill("Bad Key!")
    await page.get_by_role("button", name="Create flag").click()
    await expect(page.locator("#e-key")).to_contain_text("Start with a lowercase letter")
    await page.get_by_label("Key").fill(key)
    await page.get_by_label("Description").fill("New <b>invoice</b> layout")
    await page.get_by_label("Default variant").fill("off")
    await page.get_by_role("button", name="Create flag").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Flag {key} created.")
    await expect(page.locator("#flag-state")).to_have_text("on")
    await expect(page.get_by_text("New <b>invoice</b> layout")).to_be_visible()

    # A forged form (no CSRF token) is refused and changes nothing.
    forged = await page.request.post(
        f"{site.url}/console/flags/{key}/toggle?enabled=false", form={"csrf": "forged"}
    )
    assert forged.status == 403
    await page.reload()
    await expect(page.locator("#flag-state")).to_have_text("on")

    # The kill switch asks for confirmation, then the state changes.
    await page.get_by_role("link", name="Turn off").click()
    await expect(page.get_by_role("heading", name=f"Turn off flag {key}?")).to_be_visible()
    await page.get_by_role("button", name="Yes, turn off").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Flag {key} is off.")
    await expect(page.locator("#flag-state")).to_have_text("off")

    await page.get_by_label("Tenant slug").fill("nosuchtenant")
    await page.get_by_role("button", name="Set override").click()
    await expect(page.locator("#e-tenant")).to_contain_text("No tenant with this slug.")
    await page.get_by_label("Tenant slug").fill(tenant)
    await page.get_by_label("Variant", exact=True).select_option("on")
    await page.get_by_role("button", name="Set override").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Tenant {tenant} now gets on.")
    await expect(page.get_by_role("cell", name=tenant, exact=True)).to_be_visible()

    await page.get_by_label("Variant to roll out").select_option("on")
    await page.get_by_label("Percentage of tenants").fill("150")
    await page.get_by_role("button", name="Set rollout").click()
    await expect(page.locator("#e-percentage")).to_contain_text("from 0 to 100")
    await page.get_by_label("Percentage of tenants").fill("25")
    await page.get_by_role("button", name="Set rollout").click()
    await expect(page.get_by_role("status")).to_contain_text("Rollout: on to 25 % of tenants.")
    await shot(page, "console-flag")

    await page.get_by_role("link", name="All flags").click()
    row = page.locator(f'tr[data-flag="{key}"]')
    await expect(row.locator("[data-state]")).to_have_text("off")
    await expect(row).to_contain_text(f"{tenant} → on")
    await expect(row).to_contain_text("on to 25.0 %")
    await row.get_by_role("link", name="Turn on").click()
    await page.get_by_role("button", name="Yes, turn on").click()
    await expect(page.locator("#flag-state")).to_have_text("on")
    await page.get_by_role("link", name="All flags").click()
    await expect(row.locator("[data-state]")).to_have_text("on")
    await shot(page, "console-flags")

    await page.get_by_role("link", name="Audit log").click()
    for action in ("flag.create", "flag.disable", "flag.update", "flag.enable"):
        entry = page.get_by_role("row").filter(has_text=action).filter(has_text=key)
        await expect(entry.first).to_be_visible()
    await expect(
        page.get_by_role("row").filter(has_text="flag.disable").filter(has_text=operator.email)
    ).not_to_have_count(0)
    await context.close()


async def ready_tenant(
    chromium: Browser, site: Site, operator: Operator, prefix: str, name: str
) -> str:
    """A new tenant, created in the operator console; answers its slug once it is ready."""
    context = await chromium.new_context()
    ops = await operator_console(context, site, operator)
    slug = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await create_tenant(ops, slug, name)
    await expect(ops.get_by_role("status")).to_contain_text("It is ready.", timeout=10_000)
    await context.close()
    return slug


async def tenant_login(context: BrowserContext, site: Site, slug: str, email: str, pw: str) -> Page:
    page = await context.new_page()
    await page.goto(site.url + "/login")
    await page.get_by_label("Organisation (tenant slug)").fill(slug)
    await page.keyboard.press("Enter")
    await provider_login(page, email, pw)
    await expect(page.get_by_role("link", name="Home")).to_be_visible()
    return page


@dataclass
class CrmTenant:
    """A new tenant with the CRM, its admin and a member signed in, each in a context."""

    admin_context: BrowserContext
    admin: Page
    context: BrowserContext
    me: Page


async def crm_tenant(chromium: Browser, site: Site, db: Database, operator: Operator) -> CrmTenant:
    slug = await ready_tenant(chromium, site, operator, "crm", "CRM Co")
    realm = f"plexica-{slug}"
    admin_pw = await set_password(db, realm, f"admin@{slug}.example")
    member_email = f"sam@{slug}.example"
    member_pw = await add_user(db, site, realm, member_email, {"member"})

    admin_context = await chromium.new_context()
    admin = await tenant_login(admin_context, site, slug, f"admin@{slug}.example", admin_pw)
    await admin.get_by_role("link", name="Plugins").click()
    await admin.get_by_role("button", name="Install CRM", exact=True).click()
    await expect(admin.get_by_role("status")).to_contain_text("Plugin crm installed.")

    context = await chromium.new_context()
    me = await tenant_login(context, site, slug, member_email, member_pw)
    return CrmTenant(admin_context, admin, context, me)


async def test_a_tenant_user_works_with_the_crm_forms_and_board(
    chromium: Browser, site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    crm = await crm_tenant(chromium, site, db, operator)
    admin_context, admin, context, me = crm.admin_context, crm.admin, crm.context, crm.me
    dialogs: list[str] = []
    me.on("dialog", lambda d: dialogs.append(d.message))
    await me.get_by_role("link", name="Contacts").click()
    await expect(me.get_by_role("heading", name="Contacts")).to_be_visible()

    # The server refuses a bad e-mail: its message next to the field, the input kept.
    await me.get_by_label("First name").fill("Ada")
    await me.get_by_label("Last name").fill("Lovelace")
    await me.get_by_label("Email").fill("not-an-email")
    await me.get_by_role("button", name="Add contact").click()
    await expect(me.locator("#e-email")).to_have_text(
        "Enter an e-mail address such as name@example.com."
    )
    await expect(me.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    await expect(me.get_by_label("First name")).to_have_value("Ada")
    await expect(me.get_by_text("No contacts yet.")).to_be_visible()
    await shot(me, "tenant-crm-contact-error")
    await me.get_by_label("Email").fill("ada@example.com")
    await me.get_by_role("button", name="Add contact").click()
    await expect(me.get_by_role("status")).to_contain_text("Contact Ada Lovelace added.")
    await expect(me).to_have_url(re.compile(r"/t/p/crm/contacts\?added="))
    await expect(me.get_by_role("cell", name="ada@example.com")).to_be_visible()

    # A form posted without the session's CSRF token is refused before it reaches the plugin.
    forged = await me.request.post(
        f"{site.url}/t/p/crm/ui/contacts", form={"first_name": "Forged", "csrf": "x"}
    )
    assert forged.status == 403
    await me.reload()
    await expect(me.get_by_text("Forged")).to_have_count(0)

    # HTML in a name is text, everywhere it is shown.
    await me.get_by_label("First name").fill("<script>alert(1)</script>")
    await me.get_by_label("Last name").fill("<b>Bold</b>")
    await me.get_by_role("button", name="Add contact").click()
    await expect(me.get_by_role("status")).to_contain_text(
        "Contact <script>alert(1)</script> <b>Bold</b> added."
    )
    odd = me.get_by_role("link", name="<script>alert(1)</script> <b>Bold</b>")
    await expect(odd).to_be_visible()
    await expect(me.locator(".px-plugin b")).to_have_count(0)
    await odd.click()
    await expect(
        me.get_by_role("heading", name="<script>alert(1)</script> <b>Bold</b>")
    ).to_be_visible()
    assert dialogs == []
    await me.get_by_role("link", name="Contacts").click()
    await shot(me, "tenant-crm-contacts-added")

    # Deals: a refused form, then a deal moved across the stages with the keyboard.
    await me.get_by_role("link", name="Deals").click()
    await me.get_by_role("button", name="Add deal").click()
    await expect(me.locator("#e-title")).to_have_text("Enter a title (at most 200 characters).")
    await me.get_by_label("Title").fill("Big deal")
    await me.get_by_label("Amount").fill("1200")
    await me.get_by_role("button", name="Add deal").click()
    lead = me.locator('[data-stage="lead"]')
    await expect(lead.locator('[data-deal="Big deal"]')).to_be_visible()
    await expect(lead.get_by_role("heading")).to_have_text("Lead (1)")
    stage = me.get_by_label("Stage of Big deal")
    await stage.focus()
    await me.keyboard.press("ArrowDown")
    await expect(stage).to_have_value("qualified")
    await me.keyboard.press("Tab")
    await expect(me.get_by_role("button", name="Move Big deal")).to_be_focused()
    await me.keyboard.press("Enter")
    qualified = me.locator('[data-stage="qualified"]')
    await expect(qualified.locator('[data-deal="Big deal"]')).to_be_visible()
    await expect(lead.locator('[data-deal="Big deal"]')).to_have_count(0)
    await me.get_by_label("Stage of Big deal").select_option("won")
    await me.get_by_role("button", name="Move Big deal").press("Enter")
    await expect(me.locator('[data-stage="won"] [data-deal="Big deal"]')).to_be_visible()
    await shot(me, "tenant-crm-deals")

    # The admin disables the CRM: its pages leave the member's navigation.
    await admin.get_by_role("link", name="Plugins").click()
    await admin.get_by_role("button", name="Disable").click()
    await expect(admin.get_by_role("status")).to_contain_text("Plugin crm: disable done.")
    await me.get_by_role("link", name="Home").click()
    await expect(me.get_by_role("link", name="Contacts")).to_have_count(0)
    await expect(me.get_by_role("link", name="Deals")).to_have_count(0)
    await me.goto(site.url + "/t/p/crm/contacts")
    await expect(me.get_by_role("heading", name="Not found")).to_be_visible()
    await context.close()
    await admin_context.close()


async def billing_admin(
    chromium: Browser, site: Site, db: Database, operator: Operator
) -> tuple[BrowserContext, Page]:
    """A new tenant with Billing installed and a customer Ada Ltd, its admin signed in."""
    slug = await ready_tenant(chromium, site, operator, "bill", "Billing Co")
    admin_pw = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")

    context = await chromium.new_context(accept_downloads=True)
    me = await tenant_login(context, site, slug, f"admin@{slug}.example", admin_pw)
    await me.get_by_role("link", name="Plugins").click()
    await me.get_by_role("button", name="Install Billing", exact=True).click()
    await expect(me.get_by_role("status")).to_contain_text("Plugin billing installed.")

    await me.get_by_role("link", name="Customers").click()
    await me.get_by_label("Name").fill("Ada Ltd")
    await me.get_by_role("button", name="Add customer").click()
    await expect(me.get_by_role("status")).to_contain_text("Customer added.")
    return context, me


async def test_a_tenant_admin_issues_and_collects_an_invoice_in_billing(
    chromium: Browser, site: Site, db: Database, operator: Operator, billing_published: None
) -> None:
    context, me = await billing_admin(chromium, site, db, operator)
    await me.get_by_role("link", name="Invoices", exact=True).click()
    await me.get_by_label("Customer").select_option(label="Ada Ltd")
    await me.get_by_role("button", name="Create draft").click()
    await expect(me.get_by_role("heading", name="Invoice (draft)")).to_be_visible()
    await me.get_by_label("Description").fill("Consulting")
    await me.get_by_label("Unit price").fill("100")
    await me.get_by_role("button", name="Add line").click()
    await expect(me.get_by_role("status")).to_contain_text("Line added.")
    await me.get_by_role("button", name="Issue invoice").click()
    await expect(me.get_by_role("status")).to_contain_text("Invoice issued.")
    await expect(me.locator("#billing-status")).to_have_text("open")
    number = (await me.get_by_role("heading", name=re.compile("^Invoice ")).inner_text())[8:]

    # Paying more than the amount due: the API's message on the page, nothing recorded.
    await me.get_by_label("Payment amount").fill("1000")
    await me.get_by_role("button", name="Record payment").click()
    await expect(me.get_by_role("alert")).to_contain_text(
        "The payment was not recorded: invoices are paid in full: 100.00 EUR"
    )
    await expect(me.get_by_label("Payment amount")).to_have_value("1000")
    await shot(me, "tenant-billing-payment-refused")
    await me.reload()
    await expect(me.locator("#billing-status")).to_have_text("open")
    await expect(me.locator(".amount-due")).to_have_text("100.00 EUR")
    await expect(me.get_by_role("heading", name="Payments")).to_have_count(0)

    await me.get_by_label("Payment amount").fill("100.00")
    await me.get_by_role("button", name="Record payment").click()
    await expect(me.get_by_role("status")).to_contain_text("Payment recorded.")
    await expect(me.locator("#billing-status")).to_have_text("paid")
    await expect(me.get_by_role("heading", name="Payments")).to_be_visible()
    await shot(me, "tenant-billing-invoice-paid")
    async with me.expect_download() as download:
        await me.get_by_role("link", name="Download PDF").click()
    assert (await download.value).suggested_filename == f"{number}.pdf"
    await me.get_by_role("link", name="Invoices", exact=True).click()
    await expect(me.locator(f'tr[data-status="paid"]:has-text("{number}")')).to_be_visible()
    await context.close()


async def test_a_subscription_set_to_end_with_its_period_and_kept_in_billing(
    chromium: Browser, site: Site, db: Database, operator: Operator, billing_published: None
) -> None:
    context, me = await billing_admin(chromium, site, db, operator)
    await me.get_by_role("link", name="Plans", exact=True).click()
    await me.get_by_label("Code", exact=True).fill("basic")
    await me.get_by_label("Name", exact=True).fill("Basic")
    await me.get_by_label("Price", exact=True).fill("10")
    await me.get_by_role("button", name="Add plan").click()
    await expect(me.get_by_role("status")).to_contain_text("Plan added.")
    await me.get_by_role("link", name="Subscriptions", exact=True).click()
    await me.get_by_label("Customer", exact=True).select_option(label="Ada Ltd")
    await me.get_by_label("Plan", exact=True).select_option(label="Basic (10.00 EUR / month)")
    await me.get_by_role("button", name="Start subscription").click()
    await expect(me.get_by_role("status")).to_contain_text("Subscription started.")

    row = me.locator("tr[data-subscription]")
    await row.get_by_role("button", name="Cancel at period end").click()
    await expect(me.get_by_role("status")).to_contain_text("ends with its current period")
    await expect(row.locator(".billing-ends")).to_contain_text("ends on ")
    await expect(row).to_have_attribute("data-status", "active")
    await shot(me, "tenant-billing-subscription-ending")
    await row.get_by_role("button", name="Keep subscription").click()
    await expect(me.get_by_role("status")).to_contain_text("Subscription kept")
    await expect(row.locator(".billing-ends")).to_have_count(0)
    await expect(row.get_by_role("button", name="Cancel at period end")).to_be_visible()
    await context.close()


async def add_company(page: Page, name: str, domain: str) -> None:
    await page.get_by_role("link", name="Companies").click()
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Domain").fill(domain)
    await page.get_by_role("button", name="Add company").click()
    await expect(page.get_by_role("heading", name=name)).to_be_visible()


async def test_companies_stale_edits_and_csv_imports_in_the_crm_pages(
    chromium: Browser, site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    crm = await crm_tenant(chromium, site, db, operator)
    me = crm.me
    await crm.admin_context.close()

    # A company, then a contact linked to it from the contact's own page.
    await add_company(me, "Globex", "globex.test")
    await me.get_by_role("link", name="Contacts").click()
    await me.get_by_label("First name").fill("Hank")
    await me.get_by_label("Last name").fill("Scorpio")
    await me.get_by_role("button", name="Add contact").click()
    await expect(me.get_by_role("status")).to_contain_text("Contact Hank Scorpio added.")
    await me.get_by_role("link", name="Hank Scorpio").click()
    await me.get_by_label("Company").select_option(label="Globex")
    await me.get_by_role("button", name="Save contact").click()
    await expect(me.get_by_role("status")).to_contain_text("Saved.")
    await me.get_by_role("link", name="Globex").click()
    await expect(me.get_by_role("heading", name="Globex")).to_be_visible()
    await expect(me.get_by_role("link", name="Hank Scorpio")).to_be_visible()

    # An activity on the company's timeline, about its contact.
    await me.get_by_label("Kind").select_option("call")
    await me.get_by_label("About").select_option(label="Hank Scorpio")
    await me.get_by_label("Subject").fill("Kick-off call")
    await me.get_by_role("button", name="Log activity").click()
    await expect(me.get_by_role("status")).to_contain_text("Activity logged.")
    await expect(me.locator(".crm-activity")).to_contain_text(["Call: Kick-off call"])

    # Two tabs on one contact: the second one's form is stale once the first one saves.
    await me.get_by_role("link", name="Hank Scorpio").click()
    stale = await crm.context.new_page()
    await stale.goto(me.url)
    await me.get_by_label("Last name").fill("Scorpio-Smith")
    await me.get_by_role("button", name="Save contact").click()
    await expect(me.get_by_role("status")).to_contain_text("Saved.")
    await stale.get_by_label("Phone").fill("+1 555 0100")
    await stale.get_by_role("button", name="Save contact").click()
    await expect(stale.get_by_role("alert")).to_contain_text("changed by someone else")
    await expect(stale.get_by_label("Last name")).to_have_value("Scorpio-Smith")
    await expect(stale.get_by_label("Phone")).to_have_value("")
    await shot(stale, "tenant-crm-contact-conflict")
    await stale.reload()
    await expect(stale.get_by_label("Phone")).to_have_value("")
    await stale.close()

    # A CSV with a bad row: every problem listed, nothing imported; then a good one.
    await me.get_by_role("link", name="Contacts").click()
    header = b"first_name,last_name,email,company\r\n"
    bad = header + b"Ada,Lovelace,ada@x.test,Globex\r\n,Nobody,nope,\r\n"
    await me.get_by_label("CSV file of contacts").set_input_files(
        {"name": "contacts.csv", "mimeType": "text/csv", "buffer": bad}
    )
    await me.get_by_role("button", name="Import contacts").click()
    report = me.get_by_role("alert")
    await expect(report).to_contain_text("nothing was imported")
    await expect(report).to_contain_text("Row 3, first_name: Field required")
    await expect(report).to_contain_text("Row 3, email:")
    await expect(me.locator("tr[data-contact]")).to_have_count(1)
    await shot(me, "tenant-crm-import-errors")
    good = header + b"Ada,Lovelace,ada@x.test,Globex\r\nGrace,Hopper,,\r\n"
    await me.get_by_label("CSV file of contacts").set_input_files(
        {"name": "contacts.csv", "mimeType": "text/csv", "buffer": good}
    )
    await me.get_by_role("button", name="Import contacts").click()
    await expect(me.get_by_role("status")).to_contain_text("2 contacts imported.")
    await expect(me.locator("tr[data-contact]")).to_have_count(3)
    await expect(me.get_by_role("link", name="Ada Lovelace")).to_be_visible()

    # The export is a download of every contact.
    async with me.expect_download() as downloaded:
        await me.get_by_role("link", name="Export all contacts as CSV").click()
    download = await downloaded.value
    assert download.suggested_filename == "contacts.csv"
    exported = Path(await download.path()).read_bytes().decode("utf-8")
    assert exported.count("\r\n") == 4
    assert ",Lovelace,ada@x.test,," in exported

    # Delete asks first.
    await me.get_by_role("link", name="Grace Hopper").click()
    await me.get_by_role("link", name="Delete contact").click()
    await expect(me.get_by_role("heading", name="Delete contact Grace Hopper?")).to_be_visible()
    await me.get_by_role("button", name="Delete contact").click()
    await expect(me.get_by_role("status")).to_contain_text("Contact deleted.")
    await expect(me.locator("tr[data-contact]")).to_have_count(2)

    # ... into the trash (ADR 0236): Undo brings it back, and so does the Trash page.
    await me.get_by_role("button", name="Undo").click()
    await expect(me.get_by_role("status")).to_contain_text("Restored.")
    await expect(me.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    await me.get_by_role("link", name="Delete contact").click()
    await me.get_by_role("button", name="Delete contact").click()
    await expect(me.get_by_role("status")).to_contain_text("Contact deleted.")
    await me.get_by_role("link", name="Trash").click()
    await shot(me, "tenant-crm-trash")
    await me.get_by_role("button", name="Restore Grace Hopper").click()
    await expect(me.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    await me.get_by_role("link", name="Contacts").click()
    await expect(me.locator("tr[data-contact]")).to_have_count(3)
    await crm.context.close()
