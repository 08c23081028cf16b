"""The web shell with Keycloak 26 as the identity provider, in real Chromium (ADR 0244): the
browser signs in on Keycloak's own page and comes back signed in, signs out of both, and a user
the admin disables is signed out of the shell; ``plexica token`` signs in over http."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr
from typer.testing import CliRunner

from plexica.cli.main import app as cli
from plexica.identity.client import password_login
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.service import OPERATOR_REALM
from tests.keycloak.conftest import company_person, company_saml_realm, operator_realm_made
from tests.web.conftest import Site, chromium, serve_site  # noqa: F401 - the fixture
from tests.web.test_browser import provider_login


@pytest.fixture(scope="module")
def kc_site(
    keycloak: dict[str, Any], platform_client: tuple[str, str], database_url: str
) -> Iterator[Site]:
    """The platform in Keycloak mode, logged in as the platform's client (ADR 0251)."""
    client_id, secret = platform_client
    with serve_site(
        database_url,
        keycloak_url=keycloak["url"],
        keycloak_client_id=client_id,
        keycloak_client_secret=SecretStr(secret),
    ) as served:
        yield served


def _token(site: Site, keycloak: dict[str, Any], email: str, password: str, *tenant: str) -> str:
    """``plexica token`` against Keycloak over http (its cookies are Secure)."""
    env = {
        "PLEXICA_PUBLIC_URL": site.url, "PLEXICA_KEYCLOAK_URL": keycloak["url"],
        "PLEXICA_PASSWORD": password,
    }  # fmt: skip
    args = ["token", "--user", email, *(["--tenant", *tenant] if tenant else [])]
    issued = CliRunner().invoke(cli, args, env=env)
    assert issued.exit_code == 0, issued.output
    return issued.stdout.strip().splitlines()[-1]


async def _tenant(
    site: Site, kc: KeycloakAdapter, keycloak: dict[str, Any]
) -> tuple[str, str, str, str]:
    """A tenant an operator makes through the site's API: its slug, realm, admin and password."""
    await operator_realm_made(kc)
    ops_email, ops_password = f"ops-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
    await kc.create_user(OPERATOR_REALM, ops_email, ops_password, frozenset({"super_admin"}))
    op = {"Authorization": "Bearer " + await asyncio.to_thread(
        _token, site, keycloak, ops_email, ops_password
    )}  # fmt: skip
    slug = f"kw{secrets.token_hex(4)}"
    realm, admin_email = f"plexica-{slug}", f"admin@{slug}.example"
    async with httpx.AsyncClient(base_url=site.url + "/api/core", timeout=60) as api:
        made = await api.post(
            "/v1/tenants", headers=op, json={"slug": slug, "name": "KW", "admin_email": admin_email}
        )
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "active", made.text
    admin_password = secrets.token_urlsafe(16)
    await kc.set_password(realm, admin_email, admin_password)
    return slug, realm, admin_email, admin_password


async def _sign_in(page: Page, site: Site, slug: str) -> None:
    """To the tenant's sign-in page at Keycloak, from the shell's."""
    await page.goto(site.url + "/login")
    await page.get_by_label("Organisation (tenant slug)").fill(slug)
    await page.keyboard.press("Enter")
    await expect(page.locator("input[name=username]")).to_be_visible()


async def test_a_tenant_signs_in_and_out_through_keycloak_in_chromium(
    chromium: Browser,  # noqa: F811 - the fixture
    kc_site: Site,
    kc: KeycloakAdapter,
    keycloak: dict[str, Any],
) -> None:
    site = kc_site
    slug, realm, admin_email, admin_password = await _tenant(site, kc, keycloak)
    async with httpx.AsyncClient(base_url=site.url + "/api/core", timeout=60) as api:
        user_email, user_password = f"user@{slug}.example", secrets.token_urlsafe(16)
        user = await kc.create_user(realm, user_email, user_password, frozenset({"member"}))

        admin_context, user_context = await chromium.new_context(), await chromium.new_context()
        page = await admin_context.new_page()
        await _sign_in(page, site, slug)
        # Keycloak's own sign-in page, at Keycloak's address.
        assert page.url.startswith(f"{keycloak['url']}/realms/{realm}/"), page.url
        await provider_login(page, admin_email, admin_password)
        await page.wait_for_url(f"{site.url}/t**")
        await expect(page.get_by_role("link", name="Users")).to_be_visible()

        member = await user_context.new_page()
        await _sign_in(member, site, slug)
        await provider_login(member, user_email, user_password)
        await member.wait_for_url(f"{site.url}/t**")

        # The admin disables the user: the user's next page is the sign-in.
        admin_token = await password_login(api, kc.issuer_url(realm), admin_email, admin_password)
        admin = {"Authorization": f"Bearer {admin_token['access_token']}"}
        off = await api.post(f"/v1/users/{user.id}/disable", headers=admin)
        assert off.status_code == 200, off.text
        await member.goto(site.url + "/t/profile")
        await expect(member.get_by_role("heading", name="Sign in")).to_be_visible()

        # Sign-out ends Keycloak's session too: signing in again asks for the password.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("status")).to_contain_text("You are signed out.")
        await page.goto(f"{site.url}/login/start?tenant={slug}")
        await expect(page.locator("input[name=password]")).to_be_visible()
        assert page.url.startswith(keycloak["url"]), page.url
        await admin_context.close()
        await user_context.close()


async def test_a_company_signs_in_through_its_saml_provider_in_chromium(
    chromium: Browser,  # noqa: F811 - the fixture
    kc_site: Site,
    kc: KeycloakAdapter,
    keycloak: dict[str, Any],
) -> None:
    """SAML company sign-in (ADR 0248): the tenant admin connects the company's SAML provider
    (another realm) on the Company sign-in page and requires it; a person of the company signs
    in by giving their e-mail address and gets an account with the default role, a password of its domain is
    refused; a URL without metadata is refused."""
    site = kc_site
    slug, realm, admin_email, admin_password = await _tenant(site, kc, keycloak)
    entity_id = f"{keycloak['url']}/realms/{realm}"
    company = await company_saml_realm(kc, entity_id, f"{entity_id}/broker/company/endpoint")
    metadata_url = f"{keycloak['url']}/realms/{company}/protocol/saml/descriptor"

    admin_context = await chromium.new_context()
    page = await admin_context.new_page()
    await _sign_in(page, site, slug)
    await provider_login(page, admin_email, admin_password)
    await page.wait_for_url(f"{site.url}/t**")
    await page.goto(site.url + "/t/admin/sso")
    await expect(page.locator("#sso-entity-id")).to_have_text(entity_id)
    await page.get_by_label("Name on the sign-in page").fill("Acme SAML")
    await page.get_by_label("Protocol").select_option("saml")
    await page.get_by_label("E-mail domains (comma-separated)").fill(f"{company}.example")
    await page.get_by_label("People at these domains must use company sign-in").check()
    # A page that is no SAML metadata: refused on its field, nothing made in Keycloak.
    await page.get_by_label("Metadata URL").fill(f"{keycloak['url']}/realms/{company}")
    await page.get_by_role("button", name="Save company sign-in").click()
    await expect(page.locator("#e-metadata_url")).to_contain_text("no SAML metadata")
    assert await kc.company_sign_in(realm) is None
    await page.get_by_label("Metadata URL").fill(metadata_url)
    await page.get_by_role("button", name="Save company sign-in").click()
    await expect(page.get_by_role("status")).to_contain_text("Company sign-in saved.")
    found = await kc.company_sign_in(realm)
    assert found is not None
    assert (found["protocol"], found["issuer"]) == ("saml", f"{keycloak['url']}/realms/{company}")
    assert (found["metadata_url"], found["required"]) == (metadata_url, True)
    await admin_context.close()

    # Required (ADR 0249): an account of the company's domain is refused its password.
    lee, lee_password = f"lee@{company}.example", secrets.token_urlsafe(16)
    await kc.create_user(realm, lee, lee_password, frozenset({"member"}))
    context = await chromium.new_context()
    page = await context.new_page()
    await _sign_in(page, site, slug)
    await provider_login(page, lee, lee_password)
    await expect(
        page.get_by_text("Sign in with Acme SAML: passwords are not accepted")
    ).to_be_visible()
    await context.close()

    person = f"pat@{company}.example"
    password = await company_person(kc, company, person)
    context = await chromium.new_context()
    page = await context.new_page()
    await _sign_in(page, site, slug)
    # The e-mail first: an address at the company's domain goes there (ADR 0250).
    await page.fill("input[name=username]", person)
    await page.click("button[type=submit]")
    await expect(page.locator("input[name=password]")).to_be_visible()
    assert page.url.startswith(f"{keycloak['url']}/realms/{company}/"), page.url
    await provider_login(page, person, password)
    await page.wait_for_url(f"{site.url}/t**")
    await page.goto(site.url + "/t/profile")
    await expect(page.get_by_text(person).first).to_be_visible()
    await context.close()
    users = {u.email: u for u in await kc.list_users(realm)}
    assert users[person].roles == frozenset({"member"})
    await kc._call("DELETE", f"/admin/realms/{company}")
