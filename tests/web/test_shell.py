"""The web shell against the running platform: real sign-in through the built-in provider's
login form, real PostgreSQL, the CRM mounted in-process."""

from __future__ import annotations

import uuid

import httpx

from plexica.identity.client import password_login
from plexica.kit.db import Database
from plexica.plugins import service as plugin_service
from plexica.web.session import SESSION_COOKIE
from tests.plugins.conftest import plugin_doc
from tests.web.conftest import (
    BROKEN,
    Operator,
    Site,
    csrf_of,
    set_password,
    sign_in,
    until_provisioned,
)


async def operator_signed_in(browser: httpx.AsyncClient, operator: Operator) -> None:
    back = await sign_in(
        browser, "/login/start?operator=1&next=/console/tenants", operator.email, operator.password
    )
    assert back.status_code == 303
    assert back.headers["location"] == "/console/tenants"
    assert SESSION_COOKIE in browser.cookies


async def create_tenant(browser: httpx.AsyncClient, slug: str, name: str) -> httpx.Response:
    page = await browser.get("/console/tenants")
    made = await browser.post(
        "/console/tenants",
        data={"csrf": csrf_of(page.text), "slug": slug, "name": name,
              "admin_email": f"admin@{slug}.example"},
    )  # fmt: skip
    if made.status_code == 303 and made.headers["location"].startswith("/console/provisioning/"):
        await until_provisioned(browser, made.headers["location"])
    return made


async def test_login_page_and_anonymous_redirects(browser: httpx.AsyncClient) -> None:
    home = await browser.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/login"
    console = await browser.get("/console/tenants?state=active")
    assert console.status_code == 303
    assert console.headers["location"] == "/login?next=%2Fconsole%2Ftenants%3Fstate%3Dactive"
    login = await browser.get("/login")
    assert login.status_code == 200
    assert '<label for="f-tenant">' in login.text
    bad = await browser.get("/login/start", params={"tenant": "<b>no</b>"})
    assert bad.status_code == 422
    assert "&lt;b&gt;no&lt;/b&gt;" in bad.text
    assert "<b>no</b>" not in bad.text
    css = await browser.get("/static/plexica.css")
    assert css.status_code == 200
    assert "--px-primary" in css.text


async def test_operator_signs_in_and_manages_tenants(
    browser: httpx.AsyncClient, operator: Operator, db: Database
) -> None:
    await operator_signed_in(browser, operator)
    cookie = browser.cookies.jar
    assert any(c.name == SESSION_COOKIE and c.has_nonstandard_attr("HttpOnly") for c in cookie)
    slug = f"w{uuid.uuid4().hex[:8]}"
    made = await create_tenant(browser, slug, "<script>alert(1)</script>")
    assert made.status_code == 303, made.text
    # Other tests share the platform: start the page just before this slug.
    listed = await browser.get("/console/tenants", params={"state": "active", "after": slug[:-1]})
    assert slug in listed.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed.text
    assert "<script>alert(1)</script>" not in listed.text
    past = await browser.get("/console/tenants", params={"state": "active", "after": slug})
    assert f">{slug}<" not in past.text
    # A slug the server refuses: its message next to the field, and nothing made.
    bad = await create_tenant(browser, "Not A Slug!", "x")
    assert bad.status_code == 422
    assert 'id="e-slug"' in bad.text
    assert 'aria-invalid="true"' in bad.text
    again = await create_tenant(browser, slug, "dup")
    assert again.status_code == 409
    assert 'id="e-slug"' in again.text
    detail = await browser.get(f"/console/tenants/{slug}")
    assert detail.status_code == 200
    assert "<caption>Provisioning and deletion steps</caption>" in detail.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text
    assert (await browser.get("/console/tenants/nosuchtenant")).status_code == 404
    # Suspend asks first, then does it.
    confirm = await browser.get(f"/console/tenants/{slug}/suspend")
    assert confirm.status_code == 200
    assert "Yes, suspend" in confirm.text
    done = await browser.post(
        f"/console/tenants/{slug}/suspend", data={"csrf": csrf_of(confirm.text)}
    )
    assert done.status_code == 303
    suspended = await browser.get("/console/tenants", params={"state": "suspended"})
    assert slug in suspended.text
    catalog = await browser.get("/console/plugins")
    assert catalog.status_code == 200
    assert "<caption>Plugin catalog</caption>" in catalog.text
    wrong = await browser.post(
        "/console/plugins/nosuch/1.0.0/publish", data={"csrf": csrf_of(catalog.text)}
    )
    assert wrong.status_code == 404
    assert 'role="alert"' in wrong.text
    plugin = f"web{uuid.uuid4().hex[:8]}"
    async with db.session() as s:
        await plugin_service.register(s, plugin_doc(plugin), [])
    catalog = await browser.get("/console/plugins")
    published = await browser.post(
        f"/console/plugins/{plugin}/1.0.0/publish", data={"csrf": csrf_of(catalog.text)}
    )
    assert published.status_code == 303, published.text
    async with db.session() as s:
        versions = await plugin_service.list_versions(s, plugin)
    assert [v.status for v in versions] == ["published"]
    audit = await browser.get("/console/audit")
    assert audit.status_code == 200
    assert "<caption>Audit log</caption>" in audit.text
    health = await browser.get("/console/health")
    assert health.status_code == 200
    assert "database" in health.text.lower()


async def test_forms_without_a_valid_csrf_token_are_refused(
    browser: httpx.AsyncClient, operator: Operator
) -> None:
    await operator_signed_in(browser, operator)
    slug = f"c{uuid.uuid4().hex[:8]}"
    for token in (None, "forged"):
        data = {"slug": slug, "name": "C", "admin_email": f"a@{slug}.example"}
        if token:
            data["csrf"] = token
        refused = await browser.post("/console/tenants", data=data)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    listed = await browser.get("/console/tenants")
    assert slug not in listed.text
    out = await browser.post("/logout", data={"csrf": "forged"})
    assert out.status_code == 403


async def test_tenant_admin_sees_crm_pages_after_install_and_not_after_disable(
    site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    slug = f"t{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Tenant T")).status_code == 303
    password = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        back = await sign_in(
            me, f"/login/start?tenant={slug}&next=/t", f"admin@{slug}.example", password
        )
        assert back.headers["location"] == "/t"
        home = await me.get("/t")
        assert home.status_code == 200
        assert "Tenant T" in home.text
        assert "/t/p/crm/contacts" not in home.text
        # The operator console is not for tenant users.
        assert (await me.get("/console/tenants")).status_code == 403
        for link in ("/t/admin/plugins", "/t/admin/users", "/t/admin/branding", "/t/admin/audit"):
            assert f'href="{link}"' in home.text
        admin = await me.get("/t/admin/plugins")
        installed = await me.post(
            "/t/admin/plugins", data={"csrf": csrf_of(admin.text), "plugin_id": "crm"}
        )
        assert installed.status_code == 303, installed.text
        home = await me.get("/t")
        assert "/t/p/crm/contacts" in home.text
        assert "/t/p/crm/deals" in home.text
        # The settings form is generated from the plugin's settings schema.
        form = await me.get("/t/admin/plugins/crm/settings")
        assert 'id="f-currency"' in form.text
        assert 'id="f-page_size" name="page_size" type="number" value="25"' in form.text
        bad = await me.post(
            "/t/admin/plugins/crm/settings",
            data={"csrf": csrf_of(form.text), "currency": "eu", "page_size": "10"},
        )
        assert bad.status_code == 422
        assert 'id="e-currency"' in bad.text
        not_number = await me.post(
            "/t/admin/plugins/crm/settings",
            data={"csrf": csrf_of(form.text), "currency": "USD", "page_size": "ten"},
        )
        assert 'id="e-page_size"' in not_number.text
        saved = await me.post(
            "/t/admin/plugins/crm/settings",
            data={"csrf": csrf_of(form.text), "currency": "USD", "page_size": "10"},
        )
        assert saved.status_code == 303, saved.text
        assert 'value="USD"' in (await me.get("/t/admin/plugins/crm/settings")).text
        # Data made through the plugin's API shows up escaped in its embedded pages.
        token = await password_login(
            me, f"{site.url}/realms/plexica-{slug}", f"admin@{slug}.example", password
        )
        made = await me.post(
            "/api/plugins/crm/v1/contacts",
            json={"first_name": "<script>alert(2)</script>", "last_name": "Doe"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        assert made.status_code == 201, made.text
        contact_id = made.json()["id"]
        contacts = await me.get("/t/p/crm/contacts", params={"q": "Doe"})
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in contacts.text
        assert "<script>alert(2)</script>" not in contacts.text
        bare = await me.get(f"/t/p/crm/ui/contacts/{contact_id}", headers={"HX-Request": "true"})
        assert bare.status_code == 200
        assert "<nav" not in bare.text
        assert "Doe" in bare.text
        assert bare.headers["X-Frame-Options"] == "DENY"
        full = await me.get(f"/t/p/crm/ui/contacts/{contact_id}")
        assert '<nav class="px-nav"' in full.text
        assert "Doe" in full.text
        contacts = await me.get("/t/p/crm/contacts")
        assert contacts.status_code == 200
        assert "crm-contacts" in contacts.text
        admin = await me.get("/t/admin/plugins")
        disabled = await me.post("/t/admin/plugins/crm/disable", data={"csrf": csrf_of(admin.text)})
        assert disabled.status_code == 303
        home = await me.get("/t")
        assert "/t/p/crm/contacts" not in home.text
        gone = await me.get("/t/p/crm/contacts")
        assert gone.status_code == 404
        assert "not available" in gone.text
        confirm = await me.get("/t/admin/plugins/crm/uninstall")
        assert "Yes, uninstall" in confirm.text
        removed = await me.post(
            "/t/admin/plugins/crm/uninstall", data={"csrf": csrf_of(confirm.text)}
        )
        assert removed.status_code == 303, removed.text
        listed = await me.get("/t/admin/plugins")
        assert "uninstalled" in listed.text
        branding = await me.get("/t/admin/branding")
        refused = await me.post(
            "/t/admin/branding",
            data={"csrf": csrf_of(branding.text), "primary_color": "red;}</style><script>"},
        )
        assert refused.status_code == 422
        assert 'id="e-primary_color"' in refused.text
        assert "</style><script>" not in refused.text
        saved = await me.post(
            "/t/admin/branding", data={"csrf": csrf_of(branding.text), "primary_color": "#aa3300"}
        )
        assert saved.status_code == 303, saved.text
        assert "--px-primary: #aa3300" in (await me.get("/t")).text
        users = await me.get("/t/admin/users")
        assert users.status_code == 200
        assert f"admin@{slug}.example" in users.text
        bad = await me.post(
            "/t/admin/users",
            data={"csrf": csrf_of(users.text), "email": "not-an-email", "role": "member"},
        )
        assert bad.status_code == 422
        assert 'id="e-email"' in bad.text
        added = await me.post(
            "/t/admin/users",
            data={"csrf": csrf_of(users.text), "email": f"m@{slug}.example", "role": "member"},
        )
        assert added.status_code == 201, added.text
        assert "Initial password (shown once)" in added.text
        assert f"m@{slug}.example" in (await me.get("/t/admin/users")).text
        audit = await me.get("/t/admin/audit")
        assert audit.status_code == 200
        # Logout ends the session.
        page = await me.get("/t")
        out = await me.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert "/protocol/openid-connect/logout?" in out.headers["location"]
        assert (await me.get("/t")).status_code == 303


async def test_a_failing_plugin_fragment_is_an_error_box(
    site: Site, db: Database, operator: Operator, crm_published: None, broken_published: None
) -> None:
    slug = f"b{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Tenant B")).status_code == 303
    password = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        await sign_in(me, f"/login/start?tenant={slug}", f"admin@{slug}.example", password)
        for plugin in ("crm", BROKEN):
            admin = await me.get("/t/admin/plugins")
            done = await me.post(
                "/t/admin/plugins", data={"csrf": csrf_of(admin.text), "plugin_id": plugin}
            )
            assert done.status_code == 303, done.text
        page = await me.get(f"/t/p/{BROKEN}/oops")
        assert page.status_code == 200
        assert 'class="px-alert px-alert--error" role="alert"' in page.text
        assert "could not show this page (HTTP 404)" in page.text
        assert '<nav class="px-nav"' in page.text
        home = await me.get("/t")
        assert home.status_code == 200
        assert 'role="alert"' in home.text  # the broken widget
        assert "crm-pipeline-widget" in home.text  # the CRM widget still renders beside it


async def test_a_tenant_user_never_sees_another_tenants_records(
    site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    slugs = [f"i{uuid.uuid4().hex[:8]}" for _ in range(2)]
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as ops:
        await operator_signed_in(ops, operator)
        for slug in slugs:
            assert (await create_tenant(ops, slug, slug.upper())).status_code == 303
    browsers: list[httpx.AsyncClient] = []
    ids: list[str] = []
    try:
        for slug in slugs:
            email = f"admin@{slug}.example"
            password = await set_password(db, f"plexica-{slug}", email)
            me = httpx.AsyncClient(base_url=site.url, timeout=15.0)
            browsers.append(me)
            await sign_in(me, f"/login/start?tenant={slug}", email, password)
            admin = await me.get("/t/admin/plugins")
            data = {"csrf": csrf_of(admin.text), "plugin_id": "crm"}
            assert (await me.post("/t/admin/plugins", data=data)).status_code == 303
            token = await password_login(me, f"{site.url}/realms/plexica-{slug}", email, password)
            made = await me.post(
                "/api/plugins/crm/v1/contacts",
                json={"first_name": f"Only-{slug}", "last_name": "X"},
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        a, b = browsers
        listed = await a.get("/t/p/crm/contacts")
        assert f"Only-{slugs[0]}" in listed.text
        assert f"Only-{slugs[1]}" not in listed.text
        other = await a.get(f"/t/p/crm/ui/contacts/{ids[1]}")
        assert f"Only-{slugs[1]}" not in other.text
        assert 'role="alert"' in other.text
        theirs = await b.get("/t/p/crm/contacts")
        assert f"Only-{slugs[1]}" in theirs.text
        assert f"Only-{slugs[0]}" not in theirs.text
    finally:
        for client in browsers:
            await client.aclose()
