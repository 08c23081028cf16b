"""The invitation page of the shell (ADR 0225) on the running platform without SMTP: the mail is
kept in the dev mailbox (read by the operator through ``/v1/dev-mail``), its link opens a
set-password form (CSRF double submit), which signs the invitee in; a used or unknown link gets
an error page. One run in real headless Chromium on the tenant's own host."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, expect

from plexica.identity.client import password_login
from plexica.kit.db import Database
from tests.support.cli import plexica
from tests.web.conftest import BASE_DOMAIN, Operator, Site, csrf_of, set_password, sign_in
from tests.web.test_browser import provider_login
from tests.web.test_shell import create_tenant, operator_signed_in

PASSWORD = "a-good-long-passphrase"
LINK = re.compile(r"(https?://\S+/invite/([A-Za-z0-9_-]+))")


@dataclass
class Invited:
    slug: str
    email: str
    link: str
    token: str
    operator_token: str


async def _token(site: Site, http: httpx.AsyncClient, realm: str, email: str, pw: str) -> str:
    answer = await password_login(http, f"{site.url}/realms/{realm}", email, pw)
    return str(answer["access_token"])


async def invite(site: Site, db: Database, operator: Operator) -> Invited:
    slug = f"iv{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Invite Co")).status_code == 303
    admin = f"admin@{slug}.example"
    admin_pw = await set_password(db, f"plexica-{slug}", admin)
    email = f"new@{slug}.example"
    api = site.url + "/api/core/v1"
    async with httpx.AsyncClient(timeout=30.0) as http:
        h = {
            "Authorization": "Bearer "
            + await _token(site, http, f"plexica-{slug}", admin, admin_pw)
        }
        made = await http.post(api + "/invites", headers=h, json={"email": email})
        assert made.status_code == 201, made.text
        ops_token = await _token(site, http, "plexica-platform", operator.email, operator.password)
        kept = await http.get(
            api + "/dev-mail",
            params={"to": email},
            headers={"Authorization": f"Bearer {ops_token}"},
        )
        assert kept.status_code == 200, kept.text
        denied = await http.get(api + "/dev-mail", headers=h)
        assert denied.status_code == 403
    found = LINK.search(kept.json()[0]["body"])
    assert found is not None
    return Invited(slug, email, found.group(1), found.group(2), ops_token)


async def test_the_invite_page_sets_the_password_and_signs_in(
    site: Site, db: Database, operator: Operator
) -> None:
    got = await invite(site, db, operator)
    port = urlsplit(site.url).port
    assert got.link == f"http://{got.slug}.{BASE_DOMAIN}:{port}/invite/{got.token}"
    path = f"/invite/{got.token}"
    # The operator finds the same mail with the CLI, over the API (in process: the site's own
    # request logs share stdout, the JSON is the last line).
    env = {"PLEXICA_TOKEN": got.operator_token}
    out = plexica(env, "mail", "list", "--json", "--to", got.email, "--url", site.url)
    listed = json.loads(out.splitlines()[-1])
    assert [m["to"] for m in listed] == [got.email]
    assert got.link in listed[0]["body"]
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as browser:
        page = await browser.get(path)
        assert page.status_code == 200, page.text
        assert got.email in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        forged = await browser.post(
            path, data={"csrf": "wrong", "password": PASSWORD, "confirm": PASSWORD}
        )
        assert forged.status_code == 403
        differ = await browser.post(
            path, data={"csrf": csrf.group(1), "password": PASSWORD, "confirm": PASSWORD + "x"}
        )
        assert differ.status_code == 422
        assert "The two passwords differ." in differ.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', differ.text)
        assert csrf is not None
        done = await browser.post(
            path, data={"csrf": csrf.group(1), "password": PASSWORD, "confirm": PASSWORD}
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/login/start?tenant={got.slug}"
        signed_in = await sign_in(browser, done.headers["location"], got.email, PASSWORD)
        assert signed_in.status_code == 303
        again = await browser.get(path)
        assert again.status_code == 410
        assert "already been used" in again.text
        unknown = await browser.get("/invite/nothing-like-a-token")
        assert unknown.status_code == 404


async def test_the_invite_link_in_a_real_browser(
    chromium: Browser, site: Site, db: Database, operator: Operator
) -> None:
    got = await invite(site, db, operator)
    context = await chromium.new_context()
    page = await context.new_page()
    await page.goto(got.link)
    await expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    await page.get_by_label("Password (12 characters or more)").fill(PASSWORD)
    await page.get_by_label("Password again").fill(PASSWORD)
    await page.get_by_role("button", name="Set password").click()
    await provider_login(page, got.email, PASSWORD)
    await expect(page).to_have_url(re.compile(rf"^http://{got.slug}\.{BASE_DOMAIN}:\d+/t"))
    await page.goto(got.link)
    await expect(page.get_by_role("heading", name="Invitation no longer valid")).to_be_visible()
    await context.close()


async def test_the_users_page_invites_resends_and_withdraws(
    site: Site, db: Database, operator: Operator
) -> None:
    slug = f"iv{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Invite Co")).status_code == 303
    admin = f"admin@{slug}.example"
    admin_pw = await set_password(db, f"plexica-{slug}", admin)
    email = f"page@{slug}.example"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as me:
        assert (
            await sign_in(me, f"/login/start?tenant={slug}", admin, admin_pw)
        ).status_code == 303
        page = await me.get("/t/admin/users")
        bad = await me.post(
            "/t/admin/invites",
            data={"csrf": csrf_of(page.text), "invite_email": "nope", "invite_role": "member"},
        )
        assert bad.status_code == 422
        assert 'id="f-invite_email"' in bad.text
        sent = await me.post(
            "/t/admin/invites",
            data={"csrf": csrf_of(page.text), "invite_email": email, "invite_role": "member"},
        )
        assert sent.status_code == 303, sent.text
        listed = await me.get(sent.headers["location"])
        assert f"Invitation sent to {email}." in listed.text
        invite_id = re.search(r'action="/t/admin/invites/([0-9a-f-]+)/resend"', listed.text)
        assert invite_id is not None
        again = await me.post(
            f"/t/admin/invites/{invite_id.group(1)}/resend", data={"csrf": csrf_of(page.text)}
        )
        assert again.status_code == 303
        gone = await me.post(
            f"/t/admin/invites/{invite_id.group(1)}/revoke", data={"csrf": csrf_of(page.text)}
        )
        assert gone.status_code == 303
        after = await me.get(gone.headers["location"])
        assert f"Invitation withdrawn for {email}." in after.text
        assert f"/t/admin/invites/{invite_id.group(1)}/resend" not in after.text
        # The first admin's own invitation (provisioning sent it; they came in by the
        # break-glass password) is withdrawn without removing them.
        own = re.search(r'action="/t/admin/invites/([0-9a-f-]+)/revoke"', after.text)
        assert own is not None
        withdrawn = await me.post(
            f"/t/admin/invites/{own.group(1)}/revoke", data={"csrf": csrf_of(page.text)}
        )
        assert withdrawn.status_code == 303
        assert "/resend" not in (await me.get("/t/admin/users")).text
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as again_in:
        signed_in = await sign_in(again_in, f"/login/start?tenant={slug}", admin, admin_pw)
        assert signed_in.status_code == 303


async def test_the_operator_resends_the_first_admins_invitation_from_the_tenant_page(
    site: Site, operator: Operator
) -> None:
    slug = f"ia{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Admin Invite Co")).status_code == 303
        page = await ops.get(f"/console/tenants/{slug}")
        assert "sent, not accepted yet" in page.text
        assert "sent 1 time(s)" in page.text
        sent = await ops.post(
            f"/console/tenants/{slug}/admin-invite", data={"csrf": csrf_of(page.text)}
        )
        assert sent.status_code == 303, sent.text
        after = await ops.get(sent.headers["location"])
        assert f"Invitation sent again to admin@{slug}.example" in after.text
        assert "sent 2 time(s)" in after.text
