"""The shell's profile page (password change) and audit log viewer against the running platform
(real PostgreSQL, the built-in provider): forms, errors, sessions ended, the cursor, who may see
what."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from plexica.audit import service as audit
from plexica.identity import service as identity
from plexica.identity.client import LoginError, password_login
from plexica.kit.db import Database
from tests.web.conftest import Site, add_user, csrf_of, sign_in
from tests.web.test_sessions_page import FIREFOX, PHONE, lands_on_sign_in
from tests.web.test_tenant_admin import Tenant, tenant  # noqa: F401 - the fixture


def _realm(org: Tenant) -> str:
    return f"plexica-{org.slug}"


async def _signed_in(client: httpx.AsyncClient, org: Tenant, email: str, password: str) -> None:
    await sign_in(client, f"/login/start?tenant={org.slug}", email, password)
    assert (await client.get("/t")).status_code == 200


async def test_a_user_changes_their_password_on_the_profile_page(
    site: Site,
    db: Database,
    tenant: Tenant,  # noqa: F811 - the fixture
) -> None:
    email = f"member-{uuid.uuid4().hex[:6]}@{tenant.slug}.example"
    old = await add_user(db, site, _realm(tenant), email, {"member"})
    async with (
        httpx.AsyncClient(base_url=site.url, timeout=30.0, headers={"User-Agent": FIREFOX}) as me,
        httpx.AsyncClient(base_url=site.url, timeout=30.0, headers={"User-Agent": PHONE}) as phone,
    ):
        for client in (me, phone):
            await _signed_in(client, tenant, email, old)
        page = await me.get("/t/profile")
        assert page.status_code == 200
        assert f'<dd id="profile-email">{email}</dd>' in page.text
        assert '<dd id="profile-roles">Member</dd>' in page.text
        assert 'href="/t/profile" aria-current="page"' in page.text
        csrf = csrf_of(page.text)
        new = f"new-password-{uuid.uuid4().hex[:8]}"

        async def change(current: str, password: str, confirm: str) -> httpx.Response:
            return await me.post(
                "/t/profile/password",
                data={"csrf": csrf, "current_password": current, "new_password": password,
                      "confirm": confirm},
            )  # fmt: skip

        wrong = await change("not-my-password", new, new)
        assert wrong.status_code == 403
        assert 'id="e-current_password"' in wrong.text
        assert "Nothing was changed." in wrong.text
        assert new not in wrong.text  # a password is never sent back
        differ = await change(old, new, new + "x")
        assert differ.status_code == 422
        assert 'id="e-confirm"' in differ.text
        short = await change(old, "short", "short")
        assert short.status_code == 422
        assert 'id="e-new_password"' in short.text
        same = await change(old, old, old)
        assert same.status_code == 422
        assert "other than the current one" in same.text
        forged = await me.post(
            "/t/profile/password",
            data={"csrf": "forged", "current_password": old, "new_password": new, "confirm": new},
        )
        assert forged.status_code == 403
        assert (await phone.get("/t")).status_code == 200  # nothing so far ended anything

        done = await change(old, new, new)
        assert done.status_code == 303, done.text
        notice = parse_qs(urlsplit(done.headers["location"]).query)["notice"][0]
        assert notice == "Your password was changed. 1 other session signed out."
        assert notice in (await me.get(done.headers["location"])).text
        assert await lands_on_sign_in(phone, "/t")  # the other browser is signed out
        assert (await me.get("/t")).status_code == 200  # this one stays
        assert (await me.get("/sessions")).text.count("data-session=") == 1

    async with httpx.AsyncClient(timeout=30.0) as http:
        issuer = f"{site.url}/realms/{_realm(tenant)}"
        await password_login(http, issuer, email, new)
        with pytest.raises(LoginError, match="Invalid email or password"):
            await password_login(http, issuer, email, old)


async def test_the_audit_viewer_filters_and_pages(
    site: Site,
    db: Database,
    tenant: Tenant,  # noqa: F811 - the fixture
) -> None:
    member_email = f"member-{uuid.uuid4().hex[:6]}@{tenant.slug}.example"
    member_pw = await add_user(db, site, _realm(tenant), member_email, {"member"})
    async with db.session() as session:
        realm = await identity.find_realm(session, _realm(tenant))
        assert realm is not None
        for i in range(55):
            await audit.record(
                session, "robot@example.com", "test.bulk", realm["tenant_id"], f"item:{i}"
            )
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as admin:
        await _signed_in(admin, tenant, tenant.admin_email, tenant.admin_password)
        users = await admin.get("/t/admin/users")
        added = await admin.post(
            "/t/admin/users",
            data={
                "csrf": csrf_of(users.text),
                "email": f"new@{tenant.slug}.example",
                "role": "member",
            },
        )
        assert added.status_code == 201

        page = await admin.get("/t/admin/audit", params={"action": "identity.user.created"})
        assert page.status_code == 200
        assert "<caption>Audit log</caption>" in page.text
        assert tenant.admin_email in page.text
        assert "identity.user.created" in page.text
        assert "test.bulk" not in page.text
        assert "Older entries" not in page.text

        bulk = await admin.get("/t/admin/audit", params={"action": "test.*", "actor": "robot@*"})
        assert bulk.text.count("<td>test.bulk</td>") == 50
        assert "<td>item:54</td>" in bulk.text
        older = re.search(r'href="\?([^"]*)">Older entries</a>', bulk.text)
        assert older is not None, bulk.text
        assert "before=" in older[1]
        second = await admin.get("/t/admin/audit?" + html.unescape(older[1]))
        assert second.text.count("<td>test.bulk</td>") == 5
        assert "<td>item:0</td>" in second.text
        assert "Newest entries" in second.text
        assert "Older entries" not in second.text

        none = await admin.get(
            "/t/admin/audit", params={"action": "test.bulk", "since": "2000-01-01T00:00",
                                      "until": "2000-01-02T00:00"},
        )  # fmt: skip
        assert "No entries match these filters." in none.text
        bad = await admin.get("/t/admin/audit", params={"since": "next tuesday"})
        assert bad.status_code == 422
        assert 'id="e-since"' in bad.text
        backwards = await admin.get(
            "/t/admin/audit", params={"since": "2026-12-07T10:00", "until": "2026-12-07T09:00"}
        )
        assert backwards.status_code == 422
        assert 'id="e-until"' in backwards.text
        cursor = await admin.get("/t/admin/audit", params={"before": "-1"})
        assert cursor.status_code == 422

    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as member:
        await _signed_in(member, tenant, member_email, member_pw)
        assert 'href="/t/admin/audit"' not in (await member.get("/t")).text
        denied = await member.get("/t/admin/audit")
        assert denied.status_code == 403
        assert "test.bulk" not in denied.text
