"""Tenant administration in real headless Chromium: the admin signs in at the tenant's own host
(``<slug>.localtest.me``, mapped to loopback by the browser), changes a member's role, disables
a user who then cannot sign in, and brands the shell (name, colour, logo); a member changes their
password on the profile page and the admin finds it in the audit log with its filters."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, Dialog, Page, expect

from plexica.kit.db import Database
from tests.web.conftest import BASE_DOMAIN, Operator, Site, add_user, set_password
from tests.web.test_browser import provider_login, shot
from tests.web.test_shell import create_tenant, operator_signed_in
from tests.web.test_tenant_admin import png


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


async def test_a_user_changes_their_password_and_the_admin_finds_it_in_the_audit_log(
    chromium: Browser, site: Site, db: Database, operator: Operator
) -> None:
    slug = f"a{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Audit Co")).status_code == 303
    tenant_url = f"http://{slug}.{BASE_DOMAIN}:{urlsplit(site.url).port}"
    realm, admin_email = f"plexica-{slug}", f"admin@{slug}.example"
    admin_password = await set_password(db, realm, admin_email)
    member = f"member@{slug}.example"
    old = await add_user(db, site, realm, member, {"member"})
    new = f"new-password-{uuid.uuid4().hex[:8]}"

    context = await chromium.new_context()
    me = await context.new_page()
    await me.goto(tenant_url + "/t")
    await provider_login(me, member, old)
    await me.get_by_role("link", name="Profile").click()
    await expect(me.get_by_role("heading", name="Profile", exact=True)).to_be_visible()
    await expect(me.locator("#profile-email")).to_have_text(member)
    await expect(me.locator("#profile-roles")).to_have_text("Member")
    for current in ("not-my-password", old):
        await me.get_by_label("Current password").fill(current)
        await me.get_by_label("New password (12 characters or more)").fill(new)
        await me.get_by_label("New password again").fill(new)
        await me.get_by_role("button", name="Change password").click()
        if current != old:
            await expect(me.locator("#e-current_password")).to_contain_text("not correct")
    await expect(me.get_by_role("status")).to_contain_text("Your password was changed.")
    await shot(me, "tenant-profile")
    await context.close()

    again = await chromium.new_context()
    page = await again.new_page()
    await page.goto(tenant_url + "/t")
    await provider_login(page, member, old)
    await expect(page.get_by_text("Invalid email or password.")).to_be_visible()
    await provider_login(page, member, new)
    await expect(page.get_by_role("link", name="Home")).to_be_visible()
    assert page.url == tenant_url + "/t"
    await again.close()

    admin = await chromium.new_context()
    log = await admin.new_page()
    await log.goto(tenant_url + "/t/admin/audit")
    await provider_login(log, admin_email, admin_password)
    await expect(log.get_by_role("heading", name="Audit log")).to_be_visible()
    await log.get_by_label("Actor", exact=True).fill(member)
    await log.get_by_label("Action", exact=True).fill("identity.user.password_*")
    await log.get_by_role("button", name="Filter").click()
    rows = log.get_by_role("row").filter(has_text=member)
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("identity.user.password_changed")
    await expect(rows.nth(1)).to_contain_text("identity.user.password_change_failed")
    await rows.nth(0).get_by_text("Details").click()
    await expect(rows.nth(0)).to_contain_text('"sessions_ended": 0')
    await shot(log, "tenant-audit")
    await log.get_by_label("From (UTC)").fill("2000-01-01T00:00")
    await log.get_by_label("Until (UTC)").fill("2000-01-02T00:00")
    await log.get_by_role("button", name="Filter").click()
    await expect(log.get_by_text("No entries match these filters.")).to_be_visible()
    await expect(log.get_by_label("Actor", exact=True)).to_have_value(member)
    await admin.close()
