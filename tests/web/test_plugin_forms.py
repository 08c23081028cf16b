"""Plugin page forms through the shell over HTTP (real sign-in, real PostgreSQL, the CRM mounted
in-process): the CSRF field the shell adds, the check on the way back, the plugin's redirect
shown as the shell's page, and a user without the plugin's permissions refused."""

from __future__ import annotations

import uuid

import httpx

from plexica.kit.db import Database
from tests.web.conftest import Operator, Site, add_user, csrf_of, set_password, sign_in
from tests.web.test_shell import create_tenant, operator_signed_in


async def tenant_with_crm(site: Site, db: Database, operator: Operator) -> tuple[str, str]:
    """A new tenant with the CRM installed by its admin: its slug and the admin's password."""
    slug = f"f{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Forms Co")).status_code == 303
    password = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        await sign_in(me, f"/login/start?tenant={slug}&next=/t", f"admin@{slug}.example", password)
        admin = await me.get("/t/admin/plugins")
        await me.post("/t/admin/plugins", data={"csrf": csrf_of(admin.text), "plugin_id": "crm"})
    return slug, password


async def test_plugin_forms_pass_through_the_shell(
    site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    slug, password = await tenant_with_crm(site, db, operator)
    # A user with no role: none of the CRM's permissions.
    nobody_pw = await add_user(db, site, f"plexica-{slug}", f"val@{slug}.example", set())
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        await sign_in(me, f"/login/start?tenant={slug}&next=/t", f"admin@{slug}.example", password)

        page = await me.get("/t/p/crm/contacts")
        assert page.status_code == 200
        assert '<base href="/t/p/crm/">' in page.text
        token = csrf_of(page.text.split('<main class="px-main"')[1])
        assert (
            f'<form method="post" action="ui/contacts" novalidate><input type="hidden" name="csrf" value="{token}">'
            in page.text
        )
        assert '<form method="get" action="ui/contacts" role="search"><input' not in page.text

        missing = await me.post("/t/p/crm/ui/contacts", data={"first_name": "NoToken"})
        assert missing.status_code == 403
        assert "CSRF" in missing.text
        bad = await me.post("/t/p/crm/ui/contacts", data={"csrf": token, "email": "x"})
        assert bad.status_code == 422
        assert 'id="e-first_name"' in bad.text
        assert 'id="e-email"' in bad.text
        assert '<nav class="px-nav"' in bad.text
        made = await me.post(
            "/t/p/crm/ui/contacts", data={"csrf": token, "first_name": "Grace", "last_name": "H"}
        )
        assert made.status_code == 303
        assert made.headers["location"].startswith("/t/p/crm/contacts?added=")
        shown = await me.get(made.headers["location"])
        assert "Contact Grace H added." in shown.text
        assert 'aria-current="page"' in shown.text
        assert "NoToken" not in shown.text

        for path in ("/t/p/nosuch/ui/contacts", "/t/p/crm/ui/a/%2e%2e/x"):
            gone = await me.post(path, data={"csrf": token, "first_name": "X"})
            assert gone.status_code == 404, path

    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as val:
        await sign_in(val, f"/login/start?tenant={slug}&next=/t", f"val@{slug}.example", nobody_pw)
        home = await val.get("/t")
        assert "/t/p/crm/contacts" not in home.text
        assert (await val.get("/t/p/crm/contacts")).status_code == 404
        token = csrf_of(home.text)
        # The shell forwards (the CRM is active in the tenant); the plugin itself refuses.
        refused = await val.post("/t/p/crm/ui/contacts", data={"csrf": token, "first_name": "V"})
        assert refused.status_code == 403
        assert "not allowed" in refused.text


async def test_files_and_stale_forms_through_the_shell(
    site: Site, db: Database, operator: Operator, crm_published: None
) -> None:
    """A CSV chosen in a page's form reaches the plugin whole (ADR 0230), an export comes back
    as a download, and a stale edit form is shown as a conflict."""
    slug, password = await tenant_with_crm(site, db, operator)
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        await sign_in(me, f"/login/start?tenant={slug}&next=/t", f"admin@{slug}.example", password)
        page = await me.get("/t/p/crm/companies")
        assert page.status_code == 200
        assert 'action="ui/companies/import" enctype="multipart/form-data">' in page.text
        token = csrf_of(page.text.split('<main class="px-main"')[1])

        async def upload(content: bytes) -> httpx.Response:
            files = {"file": ("companies.csv", content, "text/csv")}
            return await me.post("/t/p/crm/ui/companies/import", data={"csrf": token}, files=files)

        # Not UTF-8 (the bytes arrive unchanged), then a bad row: listed, nothing imported.
        latin = await upload("name\r\nCafé\r\n".encode("latin-1"))
        assert latin.status_code == 422
        assert "the file must be UTF-8" in latin.text
        bad = await upload(b"name,domain\r\nAcme,acme.test\r\n,empty.test\r\n")
        assert bad.status_code == 422
        assert "Row 3, name: Field required" in bad.text
        assert '<nav class="px-nav"' in bad.text
        assert "No companies yet." in bad.text
        good = await upload(b"name,domain\r\nAcme,acme.test\r\nInitech,\r\n")
        assert good.status_code == 303
        assert good.headers["location"] == "/t/p/crm/companies?imported=2"
        assert "2 companies imported." in (await me.get(good.headers["location"])).text
        forged = await me.post(
            "/t/p/crm/ui/companies/import", files={"file": ("x.csv", b"name\r\nX\r\n")}
        )
        assert forged.status_code == 403

        export = await me.get("/t/p/crm/ui/companies/export")
        assert export.status_code == 200
        assert export.headers["content-disposition"] == 'attachment; filename="companies.csv"'
        assert export.headers["content-type"].startswith("text/csv")
        assert export.headers["x-content-type-options"] == "nosniff"
        assert export.text.startswith("id,name,domain,created_at\r\n")
        assert ",Acme,acme.test," in export.text

        company_id = export.text.split("\r\n")[1].split(",")[0]
        shown = await me.get(f"/t/p/crm/ui/companies/{company_id}")
        edit = {"csrf": token, "if_match": '"1"', "name": "Acme Two", "domain": ""}
        saved = await me.post(f"/t/p/crm/ui/companies/{company_id}", data=edit)
        assert saved.status_code == 303
        assert saved.headers["location"] == f"/t/p/crm/ui/companies/{company_id}?done=saved"
        stale = await me.post(f"/t/p/crm/ui/companies/{company_id}", data=edit)
        assert stale.status_code == 409
        assert "changed by someone else" in stale.text
        assert 'value="Acme Two"' in stale.text
        assert "Acme Two" not in shown.text
