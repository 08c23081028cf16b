"""The shell in real headless Chromium (Playwright, Debian's chromium): an operator signs in and
creates a tenant; the tenant's admin signs in, installs the CRM, opens its pages with the keyboard,
disables it and sees its pages go."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from plexica.kit.db import Database
from tests.web.conftest import ARGS, CHROMIUM, Operator, Site, set_password

# Set to a folder (e.g. docs/screenshots) to save screenshots of the main pages there.
SHOTS = os.environ.get("PLEXICA_SCREENSHOTS")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


async def provider_login(page: Page, email: str, password: str) -> None:
    """The sign-in form, the built-in provider's or Keycloak's; Keycloak's asks for the e-mail
    address first when the realm routes domains to a company's provider (ADR 0250)."""
    await page.fill("input[name=username]", email)
    if not await page.locator("input[name=password]").count():
        await page.click("button[type=submit]")
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_operator_and_tenant_admin_in_a_real_browser(
    browser: Browser, site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    slug = f"p{uuid.uuid4().hex[:8]}"
    ops = await browser.new_page()
    await ops.goto(site.url + "/")
    await expect(ops.get_by_role("heading", name="Sign in")).to_be_visible()
    await shot(ops, "login")
    await ops.get_by_role("link", name="Sign in to the operator console").click()
    await provider_login(ops, operator.email, operator.password)
    await expect(ops.get_by_role("heading", name="Tenants")).to_be_visible()
    await ops.get_by_label("Slug").fill(slug)
    await ops.get_by_label("Name", exact=True).fill("Browser <b>Co</b>")
    await ops.get_by_label("Admin email").fill(f"admin@{slug}.example")
    await ops.get_by_role("button", name="Create tenant").click()
    await expect(ops.get_by_role("status")).to_contain_text(f"Tenant {slug} created.")
    await expect(ops.get_by_role("cell", name="Browser <b>Co</b>")).to_be_visible()
    await shot(ops, "console-tenants")
    await ops.get_by_role("link", name="Health", exact=True).click()
    await expect(ops.get_by_role("cell", name="database")).to_be_visible()
    await shot(ops, "console-health")

    password = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")
    context = await browser.new_context()
    me = await context.new_page()
    await me.goto(site.url + "/login")
    await me.get_by_label("Organisation (tenant slug)").fill(slug)
    await me.keyboard.press("Enter")
    await provider_login(me, f"admin@{slug}.example", password)
    await expect(me.get_by_role("heading", name="Browser <b>Co</b>")).to_be_visible()
    await me.get_by_role("link", name="Plugins").click()
    await me.get_by_role("button", name="Install CRM", exact=True).click()
    await expect(me.get_by_role("status")).to_contain_text("Plugin crm installed.")
    await shot(me, "tenant-plugins")
    contacts = me.get_by_role("link", name="Contacts")
    await contacts.focus()
    await me.keyboard.press("Enter")
    await expect(me.get_by_role("heading", name="Contacts")).to_be_visible()
    await expect(me.locator(".crm-contacts")).to_be_visible()
    await shot(me, "tenant-crm-contacts")
    await me.get_by_role("link", name="Home").click()
    await expect(me.locator(".crm-pipeline-widget")).to_be_visible()
    await shot(me, "tenant-home")
    await me.get_by_role("link", name="Plugins").click()
    await me.get_by_role("button", name="Disable").click()
    await expect(me.get_by_role("status")).to_contain_text("Plugin crm: disable done.")
    await expect(me.get_by_role("link", name="Contacts")).to_have_count(0)
    await context.close()
