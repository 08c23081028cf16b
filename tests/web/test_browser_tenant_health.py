"""Tenant health in the operator console, in real headless Chromium (ADR 0205): a tenant's
admin signs in and works at the tenant's host; the operator's page then shows that tenant's
requests, errors, P95, storage, events and last sign-in, from the platform's own metrics and
database."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, expect

from plexica.kit.db import Database
from plexica_sdk import toptenants
from tests.web.conftest import BASE_DOMAIN, Operator, Site, set_password
from tests.web.test_browser import provider_login, shot


async def test_the_operator_sees_each_tenants_health(
    chromium: Browser,
    site: Site,
    db: Database,
    operator: Operator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This test process has served many tests' tenants: the largest bound a deployment may set
    # (PLEXICA_METRICS_TOP_TENANTS) gives this test's tenant a label of its own.
    monkeypatch.setattr(toptenants.TOP, "size", 1000)
    slug = f"h{uuid.uuid4().hex[:8]}"
    tenant_url = f"http://{slug}.{BASE_DOMAIN}:{urlsplit(site.url).port}"
    ops = await chromium.new_context()
    console = await ops.new_page()
    await console.goto(site.url + "/login/start?operator=1&next=/console/tenants")
    await provider_login(console, operator.email, operator.password)
    await console.get_by_label("Slug").fill(slug)
    await console.get_by_label("Name", exact=True).fill("Health Co")
    await console.get_by_label("Admin email").fill(f"admin@{slug}.example")
    await console.get_by_role("button", name="Create tenant").click()
    await expect(console.get_by_role("status")).to_contain_text(f"Tenant {slug} created.")

    # Before anyone of the tenant signed in.
    await console.get_by_role("link", name="Tenant health").click()
    await expect(console.get_by_role("heading", name="Tenant health")).to_be_visible()
    row = console.get_by_role("row").filter(
        has=console.get_by_role("rowheader", name=slug, exact=True)
    )
    cells = row.get_by_role("cell")
    await expect(cells.nth(0)).to_have_text("active")
    await expect(cells.nth(4)).to_have_text("0 B")
    await expect(cells.nth(6)).to_have_text("never")

    admin_email = f"admin@{slug}.example"
    password = await set_password(db, f"plexica-{slug}", admin_email)
    tenant = await chromium.new_context()
    me = await tenant.new_page()
    await me.goto(tenant_url + "/t/admin/users")
    await provider_login(me, admin_email, password)
    await expect(me.get_by_role("heading", name="Users")).to_be_visible()
    await me.get_by_role("link", name="Plugins").click()
    await expect(me.get_by_role("heading", name="Plugins")).to_be_visible()
    await tenant.close()

    await console.reload()
    row = console.get_by_role("row").filter(
        has=console.get_by_role("rowheader", name=slug, exact=True)
    )
    cells = row.get_by_role("cell")
    # The admin's pages asked the core for the tenant's users, plugins and name.
    await expect(cells.nth(1)).to_have_text(re.compile(r"^[1-9]\d*$"))
    await expect(cells.nth(2)).to_have_text("0")
    await expect(cells.nth(3)).to_have_text(re.compile(r"^\d+ ms$"))
    await expect(cells.nth(4)).to_have_text("0 B")
    await expect(cells.nth(5)).to_have_text(re.compile(r"^\d+$"))
    await expect(cells.nth(6)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
    await shot(console, "console-tenant-health")
    await ops.close()
