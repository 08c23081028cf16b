"""Support access in the shell (ADR 0240): in real Chromium, a tenant admin allows support, the
operator starts a support session from the console, sees the banner on the tenant's pages, adds
a CRM contact, ends the session, and the audit viewer names both identities. Over HTTP: a
session that reaches its end sends the browser to sign-in with a message."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect

from plexica.identity.service import now_utc
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.web.shell import SUPPORT_OVER
from tests.web.conftest import Operator, Site, csrf_of, sign_in
from tests.web.test_browser import provider_login
from tests.web.test_browser_sessions import chromium, operator_page
from tests.web.test_plugin_forms import tenant_with_crm
from tests.web.test_shell import operator_signed_in

__all__ = ["chromium"]


@pytest.fixture
def clock(site: Site) -> Iterator[list[datetime]]:
    """The core's clock, set by the test (``[]``: the real one)."""
    shift: list[datetime] = []
    state_of(site.core).clock = lambda: shift[0] if shift else now_utc()
    yield shift
    state_of(site.core).clock = None


async def test_an_operator_supports_a_tenant_user_in_chromium(
    chromium: Browser, site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    slug, password = await tenant_with_crm(site, db, operator)
    admin_email = f"admin@{slug}.example"
    admin_context = await chromium.new_context()
    admin = await admin_context.new_page()
    await admin.goto(f"{site.url}/login/start?tenant={slug}&next=/t/admin/support")
    await provider_login(admin, admin_email, password)
    await expect(admin.get_by_role("heading", name="Support access")).to_be_visible()
    await expect(admin.locator("#support-status")).to_contain_text("Operators cannot act")
    await admin.get_by_label("Allow support access for").select_option("4")
    await admin.get_by_role("button", name="Allow support access").click()
    await expect(admin.get_by_role("status")).to_contain_text("Support access allowed.")
    await expect(admin.locator("#support-status")).to_contain_text("Operators may act")

    context = await chromium.new_context()
    ops = await operator_page(context, site, operator.email, operator.password)
    await ops.goto(f"{site.url}/console/tenants/{slug}")
    await ops.get_by_label("User's e-mail").fill(admin_email)
    await ops.get_by_role("button", name="Start support session").click()
    banner = ops.locator("#support-banner")
    await expect(banner).to_contain_text(
        re.compile(rf"Support session: {re.escape(operator.email)} acting as "
                   rf"{re.escape(admin_email)} — ends at \d\d:\d\d:\d\d UTC")
    )  # fmt: skip
    await ops.get_by_role("link", name="Contacts").click()
    await expect(ops.get_by_role("heading", name="Contacts")).to_be_visible()
    await expect(banner).to_be_visible()
    await ops.get_by_label("First name").fill("Grace")
    await ops.get_by_label("Last name").fill("Hopper")
    await ops.get_by_label("Email").fill("grace@example.com")
    await ops.get_by_role("button", name="Add contact").click()
    await expect(ops.get_by_role("status")).to_contain_text("Contact Grace Hopper added.")
    await expect(banner).to_be_visible()
    await ops.get_by_role("button", name="End support session").click()
    await expect(ops.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(ops.get_by_role("status")).to_contain_text("Support session ended.")
    await ops.goto(site.url + "/t")
    await expect(ops.get_by_role("heading", name="Sign in")).to_be_visible()

    both = f"{operator.email} as {admin_email}"
    await admin.goto(f"{site.url}/t/admin/audit?actor={operator.email}*")
    rows = admin.get_by_role("row").filter(has_text=both)
    await expect(rows.filter(has_text="crm.")).to_have_count(1)
    await expect(rows.filter(has_text="identity.support.session_ended")).to_have_count(1)
    await admin.goto(f"{site.url}/t/admin/support")
    await expect(admin.get_by_role("cell", name=re.compile("ended"))).to_be_visible()
    await context.close()
    await admin_context.close()


async def test_a_support_session_at_its_end_signs_the_browser_out_with_a_message(
    site: Site, db: Database, operator: Operator, crm_published: None, clock: list[datetime]
) -> None:
    slug, password = await tenant_with_crm(site, db, operator)
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        await sign_in(me, f"/login/start?tenant={slug}&next=/t", f"admin@{slug}.example", password)
        page = await me.get("/t/admin/support")
        # Allowed for an hour, an hour less 30 seconds ago: a session started now ends with it.
        clock.append(now_utc() - timedelta(hours=1) + timedelta(seconds=30))
        allowed = await me.post("/t/admin/support", data={"csrf": csrf_of(page.text), "hours": "1"})
        assert allowed.status_code == 303, allowed.text
        clock.clear()
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as ops:
        await operator_signed_in(ops, operator)
        tenant_page = await ops.get(f"/console/tenants/{slug}")
        started = await ops.post(
            f"/console/support/{slug}",
            data={"csrf": csrf_of(tenant_page.text), "email": f"admin@{slug}.example"},
        )
        assert (started.status_code, started.headers["location"]) == (303, "/t"), started.text
        home = await ops.get("/t")
        assert home.status_code == 200
        assert "Support session:" in home.text
        deadline = time.monotonic() + 90
        while (answer := await ops.get("/t")).status_code == 200:
            assert time.monotonic() < deadline, "the support session did not end"
            await asyncio.sleep(0.5)
        assert answer.status_code == 303
        shown = await ops.get(answer.headers["location"])
        assert SUPPORT_OVER in shown.text.replace("&#39;", "'")
        assert (await ops.get("/t")).headers["location"].startswith("/login")
