"""Tenant administration against the running platform (real PostgreSQL, the built-in provider,
the local object store): users and roles, branding with a logo, the tenant from the host name."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from plexica.identity.client import LoginError, password_login
from plexica.identity.keycloak import KeycloakAdapter
from plexica.kit.db import Database
from tests.web.conftest import (
    BASE_DOMAIN,
    Operator,
    Site,
    add_user,
    csrf_of,
    set_password,
    sign_in,
)
from tests.web.test_sessions_page import FIREFOX, PHONE, lands_on_sign_in
from tests.web.test_shell import create_tenant, operator_signed_in


def png(r: int, g: int, b: int, size: int = 8) -> bytes:
    """A real PNG image of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes([r, g, b]) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass
class Tenant:
    slug: str
    admin_email: str
    admin_password: str


@pytest.fixture
async def tenant(site: Site, db: Database, operator: Operator) -> Tenant:
    slug = f"ta{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as ops:
        await operator_signed_in(ops, operator)
        made = await create_tenant(ops, slug, "Admin Co")
        assert made.status_code == 303, made.text
    email = f"admin@{slug}.example"
    return Tenant(slug, email, await set_password(db, f"plexica-{slug}", email))


@pytest.fixture
async def admin(site: Site, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as me:
        back = await sign_in(
            me, f"/login/start?tenant={tenant.slug}", tenant.admin_email, tenant.admin_password
        )
        assert back.status_code == 303
        yield me


async def bearer(
    site: Site, http: httpx.AsyncClient, slug: str, email: str, pw: str
) -> dict[str, str]:
    token = await password_login(http, f"{site.url}/realms/plexica-{slug}", email, pw)
    return {"Authorization": f"Bearer {token['access_token']}"}


async def test_branding_api_is_for_admins_and_validates_the_logo(
    site: Site, db: Database, tenant: Tenant
) -> None:
    member_email = f"m@{tenant.slug}.example"
    member_pw = await add_user(db, site, f"plexica-{tenant.slug}", member_email, {"member"})
    api = f"{site.url}/api/core/v1"
    async with httpx.AsyncClient(timeout=30.0) as http:
        admin = await bearer(site, http, tenant.slug, tenant.admin_email, tenant.admin_password)
        member = await bearer(site, http, tenant.slug, member_email, member_pw)
        roles = await http.get(f"{api}/roles", headers=admin)
        assert roles.status_code == 200, roles.text
        assert {r["role"] for r in roles.json()} == {"member", "tenant_admin"}
        got = await http.get(f"{api}/tenant/branding", headers=member)
        assert got.json() == {"name": "Admin Co", "primary_color": None, "logo": None}
        # Members read the branding but change none of it, by any route.
        for answer in (
            await http.patch(f"{api}/tenant/branding", json={"name": "X"}, headers=member),
            await http.put(f"{api}/tenant/branding/logo", content=png(1, 2, 3), headers=member),
            await http.put(
                f"{api}/tenant/settings/branding.primary_color", json={"value": "#000000"},
                headers=member,
            ),
            await http.put(
                f"{api}/files/objects/branding/logo", content=png(1, 2, 3),
                headers={**member, "Content-Type": "image/png"},
            ),
        ):  # fmt: skip
            assert answer.status_code == 403, answer.text
        bad = await http.patch(
            f"{api}/tenant/branding", json={"primary_color": "red"}, headers=admin
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["details"]
        saved = await http.patch(
            f"{api}/tenant/branding", json={"name": "Renamed Co", "primary_color": "#AA3300"},
            headers=admin,
        )  # fmt: skip
        assert saved.status_code == 200, saved.text
        assert saved.json()["name"] == "Renamed Co"
        assert saved.json()["primary_color"] == "#aa3300"
        current = await http.get(f"{api}/tenant", headers=member)
        assert current.json()["name"] == "Renamed Co"
        # Not an image, an SVG (may carry script), too large: refused, nothing stored.
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        for body, status, code in (
            (b"hello, plain text", 415, "unsupported_logo_type"),
            (svg, 415, "unsupported_logo_type"),
            (b"", 415, "unsupported_logo_type"),
            (png(1, 2, 3) + b"\0" * (512 * 1024), 413, "logo_too_large"),
        ):
            refused = await http.put(
                f"{api}/tenant/branding/logo", content=body,
                headers={**admin, "Content-Type": "image/png"},
            )  # fmt: skip
            assert refused.status_code == status, refused.text
            assert refused.json()["error"]["code"] == code
        assert (await http.get(f"{api}/tenant/branding/logo", headers=member)).status_code == 404
        image = png(200, 30, 30)
        up = await http.put(
            f"{api}/tenant/branding/logo", content=image,
            headers={**admin, "Content-Type": "image/png"},
        )  # fmt: skip
        assert up.status_code == 200, up.text
        assert up.json()["logo"]["content_type"] == "image/png"
        assert up.json()["logo"]["size"] == len(image)
        logo = await http.get(f"{api}/tenant/branding/logo", headers=member)
        assert logo.status_code == 200
        assert logo.content == image
        assert logo.headers["content-type"] == "image/png"
        assert logo.headers["x-content-type-options"] == "nosniff"
        audit = await http.get(f"{api}/audit", params={"limit": 20}, headers=admin)
        actions = {e["action"] for e in audit.json()["items"]}
        assert {"tenant.branding.updated", "tenant.branding.logo_uploaded"} <= actions
        gone = await http.delete(f"{api}/tenant/branding/logo", headers=admin)
        assert gone.status_code == 204
        assert (await http.get(f"{api}/tenant/branding", headers=member)).json()["logo"] is None


async def test_admin_changes_roles_and_disables_a_user(
    site: Site, db: Database, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    realm = f"plexica-{tenant.slug}"
    email = "<script>alert(3)</script>@x.example"
    password = await add_user(db, site, realm, email, {"member"})
    page = await admin.get("/t/admin/users")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(3)&lt;/script&gt;@x.example" in page.text
    assert "<script>alert(3)" not in page.text
    assert "identity:users:write" in page.text  # what the administrator role may do
    users = await admin.get(f"{site.url}/api/core/v1/users", headers=await _token(site, tenant))
    ids = {u["email"]: u["id"] for u in users.json()}
    uid, me = ids[email], ids[tenant.admin_email]
    csrf = csrf_of(page.text)
    # No CSRF token: refused, nothing changed.
    forged = await admin.post(f"/t/admin/users/{uid}/roles", data={"roles": "tenant_admin"})
    assert forged.status_code == 403
    none = await admin.post(f"/t/admin/users/{uid}/roles", data={"csrf": csrf})
    assert none.status_code == 422
    assert f'id="e-{uid}"' in none.text
    assert "Choose at least one role." in none.text
    promoted = await admin.post(
        f"/t/admin/users/{uid}/roles", data={"csrf": csrf, "roles": ["tenant_admin", "member"]}
    )
    assert promoted.status_code == 303, promoted.text
    assert "saved" in (await admin.get(promoted.headers["location"])).text
    # The server's refusal shows next to that user's roles.
    demote_me = await admin.post(
        f"/t/admin/users/{me}/roles", data={"csrf": csrf, "roles": "member"}
    )
    assert demote_me.status_code == 403
    assert f'id="e-{me}"' in demote_me.text
    assert "cannot remove your own administrator role" in demote_me.text
    confirm = await admin.get(f"/t/admin/users/{uid}/disable")
    assert confirm.status_code == 200
    assert "Yes, disable" in confirm.text
    assert "&lt;script&gt;" in confirm.text
    disabled = await admin.post(f"/t/admin/users/{uid}/disable", data={"csrf": csrf})
    assert disabled.status_code == 303, disabled.text
    listed = (await admin.get("/t/admin/users")).text
    assert "Disabled" in listed
    assert f'action="/t/admin/users/{uid}/enable"' in listed
    # A disabled user cannot sign in.
    async with httpx.AsyncClient(timeout=30.0) as http:
        with pytest.raises(LoginError):
            await password_login(http, f"{site.url}/realms/{realm}", email, password)
    enabled = await admin.post(f"/t/admin/users/{uid}/enable", data={"csrf": csrf})
    assert enabled.status_code == 303
    async with httpx.AsyncClient(timeout=30.0) as http:
        token = await password_login(http, f"{site.url}/realms/{realm}", email, password)
    assert token["access_token"]
    assert (await admin.get("/t/admin/users/not-a-uuid/disable")).status_code == 404


async def _token(site: Site, tenant: Tenant) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=30.0) as http:
        return await bearer(site, http, tenant.slug, tenant.admin_email, tenant.admin_password)


async def test_branding_is_applied_to_every_page(site: Site, admin: httpx.AsyncClient) -> None:
    page = await admin.get("/t/admin/branding")
    csrf = csrf_of(page.text)
    empty = await admin.post(
        "/t/admin/branding", data={"csrf": csrf, "name": " ", "primary_color": "#123456"}
    )
    assert empty.status_code == 422
    assert 'id="e-name"' in empty.text
    saved = await admin.post(
        "/t/admin/branding",
        data={"csrf": csrf, "name": "<i>Shiny</i> Co", "primary_color": "#ffee00"},
    )
    assert saved.status_code == 303, saved.text
    not_image = await admin.post(
        "/t/admin/branding/logo",
        data={"csrf": csrf}, files={"logo": ("x.png", b"<html>no</html>", "image/png")},
    )  # fmt: skip
    assert not_image.status_code == 422
    assert 'id="e-logo"' in not_image.text
    assert "PNG, JPEG, GIF or WebP" in not_image.text
    missing = await admin.post("/t/admin/branding/logo", data={"csrf": csrf})
    assert missing.status_code == 422
    assert "Choose an image file" in missing.text
    image = png(10, 200, 10)
    up = await admin.post(
        "/t/admin/branding/logo", data={"csrf": csrf}, files={"logo": ("l.png", image, "image/png")}
    )
    assert up.status_code == 303, up.text
    for path in ("/t", "/t/admin/users", "/t/admin/plugins", "/t/admin/audit"):
        html = (await admin.get(path)).text
        assert "&lt;i&gt;Shiny&lt;/i&gt; Co</a>" in html, path
        # A light colour gets dark text: the header stays readable.
        assert "--px-primary: #ffee00; --px-primary-ink: #111827;" in html
        assert 'src="/t/branding/logo?v=' in html
    src = (await admin.get("/t")).text.split('src="', 1)[1].split('"', 1)[0]
    logo = await admin.get(src)
    assert logo.status_code == 200
    assert logo.content == image
    assert logo.headers["content-type"] == "image/png"
    assert logo.headers["x-content-type-options"] == "nosniff"
    async with httpx.AsyncClient(base_url=site.url) as anonymous:
        assert (await anonymous.get(src)).status_code == 404


async def test_tenant_from_the_subdomain(
    site: Site, tenant: Tenant, admin: httpx.AsyncClient, operator: Operator
) -> None:
    port = urlsplit(site.url).port
    host = f"{tenant.slug}.{BASE_DOMAIN}:{port}"
    async with httpx.AsyncClient(base_url=site.url, timeout=30.0) as http:
        # On the tenant's host, sign-in goes straight to its realm, back to that host.
        login = await http.get("/login", params={"next": "/t"}, headers={"Host": host})
        assert login.status_code == 303
        start = await http.get(login.headers["location"], headers={"Host": host})
        assert start.status_code == 303
        to = urlsplit(start.headers["location"])
        assert to.path == f"/realms/plexica-{tenant.slug}/protocol/openid-connect/auth"
        query = parse_qs(to.query)
        assert query["redirect_uri"] == [f"http://{host}/auth/callback"]
        # The provider accepts that callback for this realm only.
        form = await http.get(start.headers["location"])
        assert form.status_code == 200
        assert 'name="password"' in form.text
        other = start.headers["location"].replace(
            f"/realms/plexica-{tenant.slug}/", "/realms/plexica-platform/"
        )
        assert (await http.get(other)).status_code == 400
        # ?tenant= and the operator button cannot pick another realm on a tenant's host.
        forced = await http.get(
            "/login/start", params={"operator": "1", "tenant": "other"}, headers={"Host": host}
        )
        assert f"/realms/plexica-{tenant.slug}/" in forced.headers["location"]
        # After a failed sign-in the tenant's host offers to try again, not the picker.
        failed = await http.get("/login", params={"error": "Refused."}, headers={"Host": host})
        assert failed.status_code == 200
        assert "Sign in again" in failed.text
        assert 'id="f-tenant"' not in failed.text
        unknown = await http.get("/login", headers={"Host": f"nosuchtenant.{BASE_DOMAIN}:{port}"})
        assert unknown.status_code == 404
        assert "Organisation not found" in unknown.text
        weird = await http.get("/t", headers={"Host": f"a.b.{BASE_DOMAIN}:{port}"})
        assert weird.status_code == 404
        # The operators' realm is not a tenant: no operator sign-in on platform.<base>.
        operators = await http.get("/login", headers={"Host": f"platform.{BASE_DOMAIN}:{port}"})
        assert operators.status_code == 404
        # A session counts only on its own tenant's host (host-only cookies; checked anyway).
        own = await admin.get("/t", headers={"Host": host})
        assert own.status_code == 200, own.text
        ops = await sign_in(http, "/login/start?operator=1", operator.email, operator.password)
        assert ops.status_code == 303
        elsewhere = await http.get("/t/admin/users", headers={"Host": host})
        assert elsewhere.status_code == 303
        assert elsewhere.headers["location"] == "/login?next=%2Ft%2Fadmin%2Fusers"
        # The apex and other hosts get the tenant picker.
        for apex in (f"{BASE_DOMAIN}:{port}", f"www.{BASE_DOMAIN}:{port}", f"127.0.0.1:{port}"):
            picker = await http.get("/login", headers={"Host": apex})
            assert picker.status_code == 200, apex
            assert '<label for="f-tenant">' in picker.text


async def test_keycloak_realms_register_the_tenant_host_callback(site: Site) -> None:
    adapter = KeycloakAdapter.from_settings(
        site.settings.model_copy(
            update={"keycloak_url": "http://127.0.0.1:9/", "keycloak_admin_user": "admin"}
        )
    )
    async with adapter:
        tenant = adapter._realm_representation("plexica-acme", uuid.uuid4())
        operators = adapter._realm_representation("plexica-platform", None)
    web = next(c for c in tenant["clients"] if c["clientId"] == "plexica-web")
    port = urlsplit(site.url).port
    assert web["redirectUris"] == [
        f"{site.url}/auth/callback",
        f"http://acme.{BASE_DOMAIN}:{port}/auth/callback",
    ]
    web = next(c for c in operators["clients"] if c["clientId"] == "plexica-web")
    assert web["redirectUris"] == [f"{site.url}/auth/callback"]


async def test_a_tenant_admin_ends_a_users_sessions(
    site: Site,
    db: Database,
    tenant: Tenant,
    admin: httpx.AsyncClient,
) -> None:
    async with (
        httpx.AsyncClient(base_url=site.url, timeout=30.0, headers={"User-Agent": FIREFOX}) as a,
        httpx.AsyncClient(base_url=site.url, timeout=30.0, headers={"User-Agent": PHONE}) as b,
    ):
        await _admin_ends_sessions(site, db, tenant, admin, (a, b))


async def _admin_ends_sessions(
    site: Site,
    db: Database,
    tenant: Tenant,
    admin: httpx.AsyncClient,
    two_browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    realm = f"plexica-{tenant.slug}"
    email = f"member-{uuid.uuid4().hex[:6]}@{tenant.slug}.example"
    password = await add_user(db, site, realm, email, {"member"})
    for client in two_browsers:
        await sign_in(client, f"/login/start?tenant={tenant.slug}", email, password)
        assert (await client.get("/t")).status_code == 200
    users = await admin.get(f"{site.url}/api/core/v1/users", headers=await _token(site, tenant))
    uid = next(u["id"] for u in users.json() if u["email"] == email)
    page = await admin.get("/t/admin/users")
    assert f'action="/t/admin/users/{uid}/sessions/end"' in page.text
    ended = await admin.post(
        f"/t/admin/users/{uid}/sessions/end", data={"csrf": csrf_of(page.text)}
    )
    assert ended.status_code == 303, ended.text
    assert (
        f"Signed {email} out of 2 web sessions."
        in (await admin.get(ended.headers["location"])).text
    )
    for client in two_browsers:
        assert await lands_on_sign_in(client, "/t")
    # The admin's own session is untouched; a member cannot end anyone's sessions.
    assert (await admin.get("/t/admin/users")).status_code == 200
    member = two_browsers[0]
    await sign_in(member, f"/login/start?tenant={tenant.slug}", email, password)
    home = await member.get("/t")
    refused = await member.post(
        f"/t/admin/users/{uid}/sessions/end", data={"csrf": csrf_of(home.text)}
    )
    assert refused.status_code == 404
    assert (await member.get("/t")).status_code == 200
