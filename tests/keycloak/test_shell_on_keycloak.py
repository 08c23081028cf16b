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
from playwright.async_api import Browser, expect
from pydantic import SecretStr
from typer.testing import CliRunner

from plexica.cli.main import app as cli
from plexica.identity.client import password_login
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.service import OPERATOR_REALM
from tests.keycloak.conftest import operator_realm_made
from tests.web.conftest import Site, chromium, serve_site  # noqa: F401 - the fixture
from tests.web.test_browser import provider_login


@pytest.fixture(scope="module")
def kc_site(keycloak: dict[str, Any], database_url: str) -> Iterator[Site]:
    with serve_site(
        database_url,
        keycloak_url=keycloak["url"],
        keycloak_admin_user=keycloak["admin_user"],
        keycloak_admin_password=SecretStr(keycloak["admin_password"]),
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


async def test_a_tenant_signs_in_and_out_through_keycloak_in_chromium(
    chromium: Browser,  # noqa: F811 - the fixture
    kc_site: Site,
    kc: KeycloakAdapter,
    keycloak: dict[str, Any],
) -> None:
    site = kc_site
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
        admin_password, user_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        await kc.set_password(realm, admin_email, admin_password)
        user_email = f"user@{slug}.example"
        user = await kc.create_user(realm, user_email, user_password, frozenset({"member"}))

        admin_context, user_context = await chromium.new_context(), await chromium.new_context()
        page = await admin_context.new_page()
        await page.goto(site.url + "/login")
        await page.get_by_label("Organisation (tenant slug)").fill(slug)
        await page.keyboard.press("Enter")
        # Keycloak's own sign-in page, at Keycloak's address.
        await expect(page.locator("input[name=username]")).to_be_visible()
        assert page.url.startswith(f"{keycloak['url']}/realms/{realm}/"), page.url
        await provider_login(page, admin_email, admin_password)
        await page.wait_for_url(f"{site.url}/t**")
        await expect(page.get_by_role("link", name="Users")).to_be_visible()

        member = await user_context.new_page()
        await member.goto(site.url + "/login")
        await member.get_by_label("Organisation (tenant slug)").fill(slug)
        await member.keyboard.press("Enter")
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
