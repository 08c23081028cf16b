"""Tenant administration in real headless Chromium: the admin signs in at the tenant's own host
(``<slug>.localtest.me``, mapped to loopback by the browser), changes a member's role, disables
a user who then cannot sign in, and brands the shell (name, colour, logo)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

from plexica.kit.db import Database
from tests.web.conftest import BASE_DOMAIN, Operator, Site, add_user, set_password
from tests.web.test_browser import ARGS, CHROMIUM, provider_login, shot
from tests.web.test_tenant_admin import png


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    # No DNS here: the browser maps the base domain and its subdomains to loopback itself.
    rules = f"--host-resolver-rules=MAP {BASE_DOMAIN} 127.0.0.1, MAP *.{BASE_DOMAIN} 127.0.0.1"
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*ARGS, rules], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def no_dialogs(page: Page) -> list[str]:
    """Messages of any alert() a page runs: escaped user data runs none."""
    seen: list[str] = []

    async def record(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record)
    return seen


async def test_tenant_admin_manages_users_and_branding_in_a_real_browser(
    chromium: Browser, site: Site, db: Database, operator: Operator
) -> None:
    slug = f"b{uuid.uuid4().hex[:8]}"
    port = urlsplit(site.url).port
    tenant_url = f"http://{slug}.{BASE_DOMAIN}:{port}"
    ops = await chromium.new_context()
    console = await ops.new_page()
    await console.goto(site.url + "/login/start?operator=1&next=/console/tenants")
    await provider_login(console, operator.email, operator.password)
    await console.get_by_label("Slug").fill(slug)
    await console.get_by_label("Name", exact=True).fill("Browser Admin Co")
    await console.get_by_label("Admin email").fill(f"admin@{slug}.example")
    await console.get_by_role("button", name="Create tenant").click()
    await expect(console.get_by_role("status")).to_contain_text(f"Tenant {slug} created.")
    await ops.close()
    realm = f"plexica-{slug}"
    admin_email = f"admin@{slug}.example"
    admin_password = await set_password(db, realm, admin_email)
    member = f"member@{slug}.example"
    await add_user(db, site, realm, member, {"member"})
    leaver = f"leaver@{slug}.example"
    leaver_password = await add_user(db, site, realm, leaver, {"member"})
    script = "<script>alert(7)</script>@evil.example"
    await add_user(db, site, realm, script, {"member"})

    context = await chromium.new_context()
    me = await context.new_page()
    dialogs = no_dialogs(me)
    # The tenant's own host: no picker, straight to its realm's sign-in, then back there.
    await me.goto(tenant_url + "/t/admin/users")
    await provider_login(me, admin_email, admin_password)
    await expect(me.get_by_role("heading", name="Users")).to_be_visible()
    assert me.url == tenant_url + "/t/admin/users"
    await expect(me.get_by_role("rowheader", name=script)).to_be_visible()

    row = me.get_by_role("row").filter(has=me.get_by_role("rowheader", name=member, exact=True))
    await row.get_by_role("checkbox", name="Administrator").check()
    await row.get_by_role("button", name=f"Save roles of {member}").click()
    await expect(me.get_by_role("status")).to_contain_text(f"Roles of {member} saved.")
    row = me.get_by_role("row").filter(has=me.get_by_role("rowheader", name=member, exact=True))
    await expect(row.get_by_role("checkbox", name="Administrator")).to_be_checked()
    await shot(me, "tenant-users")

    await me.get_by_role("link", name=f"Disable {leaver}").click()
    await expect(me.get_by_role("heading", name=f"Disable {leaver}?")).to_be_visible()
    await me.get_by_role("button", name="Yes, disable").click()
    await expect(me.get_by_role("status")).to_contain_text(f"User {leaver} disabled.")
    await expect(me.get_by_role("button", name=f"Enable {leaver}")).to_be_visible()

    away = await chromium.new_context()
    gone = await away.new_page()
    await gone.goto(tenant_url + "/t")
    await provider_login(gone, leaver, leaver_password)
    await expect(gone.get_by_text("Invalid email or password.")).to_be_visible()
    assert not gone.url.startswith(tenant_url)
    await away.close()

    await me.get_by_role("link", name="Branding").click()
    await me.get_by_label("Organisation name").fill("Acme <b>Browser</b>")
    await me.get_by_label("Primary colour").fill("#0f766e")
    await me.get_by_role("button", name="Save", exact=True).click()
    await expect(me.get_by_role("status")).to_contain_text("Branding saved.")
    await me.get_by_label("Logo image").set_input_files(
        {"name": "logo.png", "mimeType": "image/png", "buffer": png(250, 180, 0, 32)}
    )
    await me.get_by_role("button", name="Upload logo").click()
    await expect(me.get_by_role("status")).to_contain_text("Logo uploaded.")
    await shot(me, "tenant-branding")
    await me.get_by_role("link", name="Home").click()
    header = me.locator("header.px-header")
    await expect(header.get_by_role("link", name="Acme <b>Browser</b>")).to_be_visible()
    logo = header.locator("img.px-logo")
    await expect(logo).to_be_visible()
    assert await logo.evaluate("img => img.complete && img.naturalWidth") == 32
    colour = await header.evaluate("h => getComputedStyle(h).backgroundColor")
    assert colour == "rgb(15, 118, 110)"
    await me.get_by_role("link", name="Users").click()
    await expect(header.locator("img.px-logo")).to_be_visible()
    await expect(me.get_by_role("rowheader", name=script)).to_be_visible()
    assert dialogs == []

    # An address of no tenant: a clear 404 page, not a sign-in.
    lost = await context.new_page()
    answer = await lost.goto(f"http://nosuch{slug}.{BASE_DOMAIN}:{port}/")
    assert answer is not None
    assert answer.status == 404
    await expect(lost.get_by_role("heading", name="Organisation not found")).to_be_visible()
    await context.close()
