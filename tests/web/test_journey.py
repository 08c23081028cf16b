"""Issue 23's whole journey in real headless Chromium: a new tenant's first admin, from the
invite e-mail its provisioning sent over real SMTP, sets a password, installs the CRM and
Billing, imports 1,000 contacts from CSV, wins a deal (Billing drafts its invoice from the
event), issues and collects the invoice, and finds each step, with their own e-mail as actor,
in the audit viewer; the operator's tenant page then says the invitation was accepted."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.smtp import Inbox, smtp_server
from tests.web.conftest import BASE_DOMAIN, Operator, Site, serve_site
from tests.web.test_browser import provider_login, shot
from tests.web.test_browser_flows import add_company
from tests.web.test_shell import create_tenant, operator_signed_in

PASSWORD = "a-good-long-passphrase"
CONTACTS = 1000
# Generous: the machine running the suite may be saturated.
SLOW = 60_000


@dataclass(frozen=True)
class MailSite:
    site: Site
    inbox: Inbox


@pytest.fixture(scope="module")
def mail_site(database_url: str) -> Iterator[MailSite]:
    """A second platform on the suite's database, its mail sent to a real SMTP server and its
    plugins' events delivered (the session's site keeps the dev mailbox other tests read)."""
    with (
        smtp_server() as (smtp_url, inbox),
        serve_site(database_url, smtp_url=smtp_url, deliver_events=True) as site,
    ):
        yield MailSite(site, inbox)


async def invited_first_admin(site: Site, inbox: Inbox, operator: Operator) -> tuple[str, str, str]:
    """The operator creates the tenant in the console; its provisioning mails the first admin
    an invitation over SMTP, and the tenant's page says it is not accepted yet. Answers the
    tenant's slug, the admin's address and the link of the one mail the SMTP server received."""
    slug = f"jy{uuid.uuid4().hex[:8]}"
    email = f"admin@{slug}.example"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Journey Co")).status_code == 303
        assert await admin_invite_status(ops, slug) == "sent, not accepted yet"
    assert len(inbox.to(email)) == 1
    link, _ = inbox.last_link(email)
    assert link.startswith(f"http://{slug}.{BASE_DOMAIN}:")
    return slug, email, link


async def admin_invite_status(ops: httpx.AsyncClient, slug: str) -> str:
    page = await ops.get(f"/console/tenants/{slug}")
    found = re.search(r'data-testid="admin-invite-status">([^<]*)<', page.text)
    assert found is not None, page.text
    return found.group(1)


def contacts_csv(count: int, company: str) -> bytes:
    rows = [f"Person{i},Number{i},person{i}@contacts.test,{company}" for i in range(count)]
    return ("first_name,last_name,email,company\r\n" + "\r\n".join(rows) + "\r\n").encode()


async def install(page: Page, plugin: str, name: str) -> None:
    """From the catalog, with one click."""
    await page.get_by_role("link", name="Plugins").click()
    await page.get_by_role("button", name=f"Install {name}", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text(
        f"Plugin {plugin} installed.", timeout=SLOW
    )
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=plugin, exact=True))
    await expect(row).to_contain_text("active")


async def until_listed(page: Page, row: str) -> None:
    """Reloads the page, as a user would, until ``row`` is on it (an event's handler makes it)."""
    deadline = time.monotonic() + SLOW / 1000
    while not await page.locator(row).count():
        assert time.monotonic() < deadline, f"{row} not on {page.url}"
        await page.reload()


async def audited(page: Page, action: str, actor: str) -> None:
    await page.get_by_label("Action").fill(action)
    await page.get_by_label("Actor").fill(actor)
    await page.get_by_role("button", name="Filter").click()
    rows = page.get_by_role("row").filter(has_text=action).filter(has_text=actor)
    await expect(rows.first).to_be_visible()


async def test_the_first_admin_runs_the_whole_journey_from_the_invite_mail(
    chromium: Browser,
    mail_site: MailSite,
    operator: Operator,
    crm_published: None,
    billing_published: None,
) -> None:
    slug, email, link = await invited_first_admin(mail_site.site, mail_site.inbox, operator)
    context = await chromium.new_context()
    me = await context.new_page()

    await me.goto(link)
    await expect(me.get_by_role("heading", name="Choose your password")).to_be_visible()
    await shot(me, "journey-invite")
    await me.get_by_label("Password (12 characters or more)").fill(PASSWORD)
    await me.get_by_label("Password again").fill(PASSWORD)
    await me.get_by_role("button", name="Set password").click()
    await provider_login(me, email, PASSWORD)
    await expect(me.get_by_role("heading", name="Journey Co")).to_be_visible()

    await install(me, "crm", "CRM")
    await install(me, "billing", "Billing")
    await shot(me, "journey-plugins")

    await add_company(me, "Umbrella Corp", "umbrella.test")

    await me.get_by_role("link", name="Contacts").click()
    await me.get_by_label("CSV file of contacts").set_input_files(
        {"name": "contacts.csv", "mimeType": "text/csv",
         "buffer": contacts_csv(CONTACTS, "Umbrella Corp")},
    )  # fmt: skip
    await me.get_by_role("button", name="Import contacts").click()
    await expect(me.get_by_role("status")).to_contain_text(
        f"{CONTACTS} contacts imported.", timeout=SLOW
    )
    await expect(me.get_by_role("link", name="Person0 Number0")).to_be_visible()
    await shot(me, "journey-contacts-imported")

    await me.get_by_role("link", name="Deals").click()
    await me.get_by_label("Title").fill("Umbrella pilot")
    await me.get_by_label("Amount").fill("4200")
    await me.get_by_role("button", name="Add deal").click()
    await expect(me.locator('[data-stage="lead"] [data-deal="Umbrella pilot"]')).to_be_visible()
    await me.get_by_role("link", name="Umbrella pilot").click()
    await me.get_by_label("Company").select_option(label="Umbrella Corp")
    await me.get_by_role("button", name="Save deal").click()
    await expect(me.get_by_role("status")).to_contain_text("Saved.")
    await me.get_by_role("link", name="on the board").click()
    for stage in ("qualified", "proposal", "won"):
        await me.get_by_label("Stage of Umbrella pilot").select_option(stage)
        await me.get_by_role("button", name="Move Umbrella pilot").click()
        card = me.locator(f'[data-stage="{stage}"] [data-deal="Umbrella pilot"]')
        await expect(card).to_be_visible()
    await shot(me, "journey-deal-won")

    # Billing drafted the invoice when the deal was won (its handler of crm.deal.won).
    await me.get_by_role("link", name="Invoices", exact=True).click()
    await until_listed(me, 'tr[data-status="draft"]')
    await me.locator('tr[data-status="draft"]').get_by_role("link", name="Draft").click()
    await expect(me.get_by_role("heading", name="Invoice (draft)")).to_be_visible()
    await expect(me.get_by_text("Umbrella pilot")).to_be_visible()
    await me.get_by_role("button", name="Issue invoice").click()
    await expect(me.get_by_role("status")).to_contain_text("Invoice issued.")
    await expect(me.locator(".amount-due")).to_have_text("4200.00 EUR")
    await me.get_by_label("Payment amount").fill("4200.00")
    await me.get_by_role("button", name="Record payment").click()
    await expect(me.get_by_role("status")).to_contain_text("Payment recorded.")
    await expect(me.locator("#billing-status")).to_have_text("paid")
    await shot(me, "journey-invoice-paid")

    await me.get_by_role("link", name="Audit log").click()
    await expect(me.get_by_role("heading", name="Audit log")).to_be_visible()
    for action in (
        "identity.invite.accepted", "plugin.installed", "crm.contact.created",
        "crm.deal.won", "billing.invoice.issued", "billing.invoice.paid",
    ):  # fmt: skip
        await audited(me, action, email)
    await me.get_by_label("Action").fill("crm.contact.*")
    await me.get_by_role("button", name="Filter").click()
    await expect(me.get_by_role("row").filter(has_text="crm.contact.created")).to_have_count(50)
    await expect(me.get_by_role("link", name="Older entries")).to_be_visible()
    await me.get_by_label("Action").fill("plugin.installed")
    await me.get_by_role("button", name="Filter").click()
    for plugin in ("crm", "billing"):
        installed = me.get_by_role("row").filter(has_text=f"plugin:{plugin}")
        await expect(installed.filter(has_text=email)).to_have_count(1)
    await shot(me, "journey-audit")
    await context.close()

    async with httpx.AsyncClient(base_url=mail_site.site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        assert await admin_invite_status(ops, slug) == "accepted"
