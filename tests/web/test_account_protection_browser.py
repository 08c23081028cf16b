"""Account protection in real headless Chromium (ADR 0243): a tenant admin sets the minimum
password length on the Sign-in security page (a wrong value is shown on its field), and a user
is then refused a shorter password on the profile page, told the tenant's minimum."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, expect

from plexica.kit.db import Database
from tests.web.conftest import Site, add_user
from tests.web.test_mfa_browser import _sign_in
from tests.web.test_tenant_admin import Tenant, tenant  # noqa: F401 - the fixture

MINIMUM = "Minimum password length (12 to 128 characters)"


async def test_an_admin_sets_the_minimum_length_and_a_user_is_held_to_it(
    chromium: Browser,
    site: Site,
    db: Database,
    tenant: Tenant,  # noqa: F811 - the fixture
) -> None:
    email = f"user-{uuid.uuid4().hex[:6]}@{tenant.slug}.example"
    password = await add_user(db, site, f"plexica-{tenant.slug}", email, {"member"})
    admin_context, user_context = await chromium.new_context(), await chromium.new_context()
    admin = await admin_context.new_page()
    await _sign_in(admin, site, tenant.slug, tenant.admin_email, tenant.admin_password)
    await admin.get_by_role("link", name="Users").click()
    await admin.get_by_role("link", name="Sign-in security").click()
    await admin.get_by_label(MINIMUM).fill("200")
    await admin.get_by_role("button", name="Save sign-in security").click()
    await expect(admin.locator("#e-password_min_length")).to_contain_text("128")
    await expect(admin.get_by_label(MINIMUM)).to_have_value("200")  # as typed, to correct
    await admin.get_by_label(MINIMUM).fill("20")
    await admin.get_by_role("button", name="Save sign-in security").click()
    await expect(admin.get_by_role("status")).to_contain_text("Sign-in security saved")
    await expect(admin.get_by_label(MINIMUM)).to_have_value("20")

    page = await user_context.new_page()
    await _sign_in(page, site, tenant.slug, email, password)
    await page.get_by_role("link", name="Profile").click()
    new = page.get_by_label("New password (20 characters or more)")
    await page.get_by_label("Current password").fill(password)
    await new.fill("fifteen-chars-x")
    await page.get_by_label("New password again").fill("fifteen-chars-x")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#e-new_password")).to_contain_text("Use 20 to 256 characters.")
    await page.get_by_label("Current password").fill(password)
    await new.fill("twenty-or-more-characters")
    await page.get_by_label("New password again").fill("twenty-or-more-characters")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("status")).to_contain_text("Your password was changed.")
    await admin_context.close()
    await user_context.close()
