"""Server-side sessions and browser hardening in real headless Chromium: a cookie copied before
sign-out opens only the sign-in page; a form on another site that carries a valid CSRF token is
refused; the sessions page ends another browser's session; no page breaks its own CSP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from html import escape

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from plexica.kit.db import Database
from tests.web.conftest import ARGS, CHROMIUM, Operator, Site, add_user
from tests.web.test_browser import provider_login

EVIL = "http://evil.example"


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


def csp_violations(page: Page) -> list[str]:
    seen: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            seen.append(message.text)

    page.on("console", record)
    return seen


async def operator_page(context: BrowserContext, site: Site, email: str, password: str) -> Page:
    page = await context.new_page()
    await page.goto(site.url + "/")
    await page.get_by_role("link", name="Sign in to the operator console").click()
    await provider_login(page, email, password)
    await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
    return page


async def test_a_cookie_replayed_after_sign_out_gets_the_sign_in_page(
    chromium: Browser, site: Site, operator: Operator
) -> None:
    context = await chromium.new_context()
    page = await operator_page(context, site, operator.email, operator.password)
    violations = csp_violations(page)
    copied = await context.cookies()
    assert [c["name"] for c in copied if c["name"] == "plexica_session"]
    session = next(c for c in copied if c["name"] == "plexica_session")
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    await page.get_by_role("link", name="Feature flags").click()
    await expect(page.get_by_role("heading", name="Feature flags")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    assert violations == []

    thief = await chromium.new_context()
    await thief.add_cookies(copied)  # type: ignore[arg-type]
    stolen = await thief.new_page()
    await stolen.goto(site.url + "/console/tenants")
    await expect(stolen.get_by_role("heading", name="Sign in")).to_be_visible()
    assert stolen.url.startswith(site.url + "/login")
    await thief.close()
    await context.close()


async def test_a_form_on_another_site_with_a_valid_csrf_token_is_refused(
    chromium: Browser, site: Site, operator: Operator
) -> None:
    context = await chromium.new_context()
    page = await operator_page(context, site, operator.email, operator.password)
    await page.goto(site.url + "/console/flags")
    token = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    key = f"evil-{uuid.uuid4().hex[:8]}"
    attack = (
        f'<!doctype html><title>Win a prize</title><form method="post" '
        f'action="{site.url}/console/flags"><input type="hidden" name="csrf" '
        f'value="{escape(token)}"><input type="hidden" name="key" value="{key}">'
        f'<input type="hidden" name="default" value="on"><button>Claim</button></form>'
    )
    await context.route(
        EVIL + "/**", lambda route: route.fulfill(body=attack, content_type="text/html")
    )
    await page.goto(EVIL + "/prize")
    await page.get_by_role("button", name="Claim").click()
    await expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    await page.goto(site.url + "/console/flags")
    await expect(page.get_by_role("heading", name="Feature flags")).to_be_visible()
    assert key not in await page.content()
    # The same form, sent from the shell's own page, is taken.
    await page.get_by_label("Key").fill(key.replace("evil", "good"))
    await page.get_by_role("button", name="Create flag").click()
    await expect(page.get_by_role("status")).to_be_visible()
    assert key.replace("evil", "good") in await page.content()
    await context.close()


async def test_the_sessions_page_ends_another_browsers_session(
    chromium: Browser, site: Site, db: Database
) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    password = await add_user(db, site, "plexica-platform", email, {"super_admin"})
    laptop_context, phone_context = await chromium.new_context(), await chromium.new_context()
    laptop = await operator_page(laptop_context, site, email, password)
    phone = await operator_page(phone_context, site, email, password)
    violations = csp_violations(laptop)
    await laptop.get_by_role("link", name="Sessions").click()
    await expect(laptop.get_by_role("heading", name="Sessions")).to_be_visible()
    rows = laptop.locator("tr[data-session]")
    await expect(rows).to_have_count(2)
    await expect(laptop.get_by_text("this browser")).to_have_count(1)
    await laptop.get_by_role("button", name="End the session of").click()
    await expect(laptop.get_by_role("status")).to_contain_text("The session was ended.")
    await expect(rows).to_have_count(1)
    await phone.reload()
    await expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()
    await laptop.get_by_role("link", name="Tenants").click()
    await expect(laptop.get_by_role("heading", name="Tenants")).to_be_visible()
    assert violations == []
    await laptop_context.close()
    await phone_context.close()
