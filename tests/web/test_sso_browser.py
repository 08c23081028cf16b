"""Company sign-in in real headless Chromium (ADR 0246): a tenant admin connects the company's
provider (a Keycloak 26 realm) on the Company sign-in page, a wrong issuer shown on its field
first; a person of the company's domain then signs in there from the tenant's sign-in page and
lands in the shell with a new member account."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, expect

from tests.identity.test_sso import Company, company  # noqa: F401 - the fixture
from tests.keycloak.conftest import keycloak  # noqa: F401 - the fixture
from tests.web.conftest import Site
from tests.web.test_browser import provider_login
from tests.web.test_mfa_browser import _sign_in
from tests.web.test_tenant_admin import Tenant, tenant  # noqa: F401 - the fixture


async def test_an_admin_connects_the_company_and_a_colleague_signs_in_through_it(
    chromium: Browser,
    site: Site,
    tenant: Tenant,  # noqa: F811 - the fixture
    company: Company,  # noqa: F811 - the fixture
) -> None:
    admin_context, user_context = await chromium.new_context(), await chromium.new_context()
    admin = await admin_context.new_page()
    await _sign_in(admin, site, tenant.slug, tenant.admin_email, tenant.admin_password)
    await admin.get_by_role("link", name="Users").click()
    await admin.get_by_role("link", name="Company sign-in").click()
    await expect(admin.locator("#sso-redirect")).to_contain_text(
        f"/realms/plexica-{tenant.slug}/broker/oidc/endpoint"
    )
    await admin.get_by_label("Name on the sign-in page").fill("Company login")
    await admin.get_by_label("Issuer URL").fill(company.issuer + "-nowhere")
    await admin.get_by_label("Client ID").fill(company.client_id)
    await admin.get_by_label("Client secret").fill(company.secret)
    await admin.get_by_label("E-mail domains (comma-separated)").fill(company.domain)
    await admin.get_by_role("button", name="Save company sign-in").click()
    await expect(admin.locator("#e-issuer")).to_contain_text("answered HTTP 404")
    await admin.get_by_label("Issuer URL").fill(company.issuer)
    await admin.get_by_label("Client secret").fill(company.secret)
    await admin.get_by_role("button", name="Save company sign-in").click()
    await expect(admin.get_by_role("status")).to_contain_text("Company sign-in saved.")

    email = f"colleague-{uuid.uuid4().hex[:6]}@{company.domain}"
    password = await company.person(email)
    page = await user_context.new_page()
    await page.goto(site.url + "/login")
    await page.get_by_label("Organisation (tenant slug)").fill(tenant.slug)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Sign in with Company login")).to_be_visible()
    await page.fill("input[name=username]", email)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    # The company's own page, then back in the shell with an account of the default role.
    await page.wait_for_url(company.issuer + "/**")
    await provider_login(page, email, password)
    await page.wait_for_url(f"{site.url}/t**")
    await page.get_by_role("link", name="Profile").click()
    await expect(page.locator("#profile-email")).to_have_text(email)
    await expect(page.locator("#profile-roles")).to_have_text("Member")
    await admin_context.close()
    await user_context.close()
