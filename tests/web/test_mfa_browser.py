"""Two-step verification in real headless Chromium (ADR 0232): a user turns it on from the
profile page with the key shown there and is then asked for a code at sign-in; a wrong code
keeps them out, a current one lets them in, and they turn it off again."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, Page, expect

from plexica.kit.db import Database
from tests.support.totp import code_at, next_code
from tests.web.conftest import Site, add_user
from tests.web.test_browser import provider_login
from tests.web.test_tenant_admin import Tenant, tenant  # noqa: F401 - the fixture


async def _sign_in(page: Page, site: Site, slug: str, email: str, password: str) -> None:
    await page.goto(site.url + "/login")
    await page.get_by_label("Organisation (tenant slug)").fill(slug)
    await page.keyboard.press("Enter")
    await provider_login(page, email, password)


async def test_a_user_turns_on_two_step_verification_and_signs_in_with_a_code(
    chromium: Browser,
    site: Site,
    db: Database,
    tenant: Tenant,  # noqa: F811 - the fixture
) -> None:
    email = f"mfa-{uuid.uuid4().hex[:6]}@{tenant.slug}.example"
    password = await add_user(db, site, f"plexica-{tenant.slug}", email, {"member"})
    context = await chromium.new_context()
    page = await context.new_page()
    await _sign_in(page, site, tenant.slug, email, password)
    await page.get_by_role("link", name="Profile").click()
    await expect(page.locator("#mfa-state")).to_contain_text("Off.")
    await page.get_by_role("button", name="Set up two-step verification").click()
    secret = (await page.locator("#mfa-secret").inner_text()).strip()
    await page.get_by_label("Code from the app").fill("000000x")
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.get_by_role("alert")).to_contain_text("That code is not valid")
    await page.get_by_label("Code from the app").fill(code_at(secret))
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.get_by_role("status")).to_contain_text("Two-step verification is on.")
    await expect(page.locator("#recovery-codes li")).to_have_count(10)
    recovery = (await page.locator("#recovery-codes li").first.inner_text()).strip()
    await page.get_by_role("button", name="Sign out").click()

    await _sign_in(page, site, tenant.slug, email, password)
    await expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    await page.get_by_label("Code from your authenticator app, or a recovery code").fill("123")
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("alert")).to_contain_text("That code is not valid")
    await page.get_by_label("Code from your authenticator app, or a recovery code").fill(
        next_code(secret)
    )
    await page.get_by_role("button", name="Verify").click()
    await page.get_by_role("link", name="Profile").click()
    await expect(page.locator("#mfa-state")).to_contain_text("On. 10 recovery codes left.")
    await page.get_by_label("A current code or a recovery code").fill(code_at(secret, 0))
    await page.get_by_role("button", name="Turn off").click()
    await expect(page.get_by_role("alert")).to_contain_text("That code is not valid")
    await page.get_by_label("A current code or a recovery code").fill(recovery)
    await page.get_by_role("button", name="Turn off").click()
    await expect(page.get_by_role("status")).to_contain_text("Two-step verification is off.")
    await expect(page.locator("#mfa-state")).to_contain_text("Off.")
    await context.close()


async def test_a_tenant_admin_requires_two_step_verification_and_a_user_sets_it_up(
    chromium: Browser,
    site: Site,
    db: Database,
    tenant: Tenant,  # noqa: F811 - the fixture
) -> None:
    email = f"new-{uuid.uuid4().hex[:6]}@{tenant.slug}.example"
    password = await add_user(db, site, f"plexica-{tenant.slug}", email, {"member"})
    admin_context, user_context = await chromium.new_context(), await chromium.new_context()
    admin = await admin_context.new_page()
    await _sign_in(admin, site, tenant.slug, tenant.admin_email, tenant.admin_password)
    await admin.get_by_role("link", name="Users").click()
    await admin.get_by_role("link", name="Sign-in security").click()
    await admin.get_by_label("Require two-step verification for every user").check()
    await admin.get_by_role("button", name="Save sign-in security").click()
    await expect(admin.get_by_role("status")).to_contain_text("Two-step verification is required")

    page = await user_context.new_page()
    await _sign_in(page, site, tenant.slug, email, password)
    await expect(page.get_by_role("heading", name="Set up two-step verification")).to_be_visible()
    secret = (await page.locator("#mfa-secret").inner_text()).strip()
    await page.get_by_label("Code from the app").fill(code_at(secret))
    await page.get_by_role("button", name="Turn on and continue").click()
    await expect(page.locator("#recovery-codes li")).to_have_count(10)
    await page.get_by_role("button", name="I have saved them, continue").click()
    await page.get_by_role("link", name="Profile").click()
    await expect(page.locator("#mfa-state")).to_contain_text("On. 10 recovery codes left.")

    # The admin turns it off for the user (a lost phone), from the users page.
    await admin.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    await admin.get_by_role("button", name=f"Turn off two-step verification of {email}").click()
    await expect(admin.get_by_role("status")).to_contain_text("Two-step verification turned off")
    await admin_context.close()
    await user_context.close()
