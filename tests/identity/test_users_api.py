"""Users API, RBAC (deny by default), role permissions and the audit log."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import text

from plexica.identity.bootstrap import OperatorCredentials
from plexica.identity.client import LoginError
from plexica.identity.service import OPERATOR_REALM
from plexica.kit.db import Database
from tests.identity.conftest import Live, bearer, login, provision, set_password


async def _admin(live: Live, db: Database, http: httpx.AsyncClient) -> tuple[str, object]:
    tenant = await provision(db, live)
    token = await login(
        http,
        live,
        tenant.realm,
        tenant.admin_email,
        await set_password(db, tenant.realm, tenant.admin_email),
    )
    return token, tenant


async def test_admin_manages_users_and_member_is_denied(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    admin = await login(
        http,
        live,
        tenant.realm,
        tenant.admin_email,
        await set_password(db, tenant.realm, tenant.admin_email),
    )
    h = bearer(admin)

    created = await http.post(live.url + "/v1/users", headers=h, json={"email": "Bob@Example.com"})
    assert created.status_code == 201, created.text
    bob = created.json()
    assert bob["user"]["email"] == "bob@example.com"
    assert bob["user"]["roles"] == ["member"]
    assert bob["initial_password"]

    duplicate = await http.post(
        live.url + "/v1/users", headers=h, json={"email": "bob@example.com"}
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "conflict"
    bad_role = await http.post(
        live.url + "/v1/users", headers=h, json={"email": "c@example.com", "roles": ["super_admin"]}
    )
    assert bad_role.status_code == 422
    assert bad_role.json()["error"]["code"] == "invalid_input"
    bad_email = await http.post(live.url + "/v1/users", headers=h, json={"email": "nope"})
    assert bad_email.status_code == 422

    member = await login(http, live, tenant.realm, "bob@example.com", bob["initial_password"])
    me = (await http.get(live.url + "/v1/me", headers=bearer(member))).json()
    assert me["roles"] == ["member"]
    assert me["permissions"] == []
    for method, path in [("GET", "/v1/users"), ("POST", "/v1/users"), ("GET", "/v1/audit")]:
        denied = await http.request(
            method, live.url + path, headers=bearer(member), json={"email": "x@example.com"}
        )
        assert denied.status_code == 403, (method, path)
        assert denied.json()["error"]["code"] == "forbidden"

    uid = bob["user"]["id"]
    promoted = await http.put(
        live.url + f"/v1/users/{uid}/roles", headers=h, json={"roles": ["tenant_admin", "member"]}
    )
    assert promoted.json()["roles"] == ["member", "tenant_admin"]
    disabled = await http.post(live.url + f"/v1/users/{uid}/disable", headers=h)
    assert disabled.json()["enabled"] is False
    listed = {u["email"]: u for u in (await http.get(live.url + "/v1/users", headers=h)).json()}
    assert listed["bob@example.com"]["enabled"] is False

    # A disabled user can no longer sign in.
    refused = await http.get(
        live.issuer(tenant.realm) + "/protocol/openid-connect/auth",
        params={"response_type": "code", "client_id": "plexica-cli"},
    )
    assert refused.status_code == 400

    entries = (
        await http.get(live.url + "/v1/audit", headers=h, params={"action": "identity.user.*"})
    ).json()["items"]
    actions = [e["action"] for e in entries]
    assert actions[:3] == [
        "identity.user.disabled",
        "identity.user.roles_changed",
        "identity.user.created",
    ]
    roles_change = entries[1]
    assert roles_change["actor"] == tenant.admin_email
    assert roles_change["before"]["roles"] == ["member"]
    assert roles_change["after"]["roles"] == ["member", "tenant_admin"]
    assert roles_change["trace_id"]
    assert roles_change["tenant_id"] == str(tenant.id)

    # The same changes are events of the tenant, for plugins and the broker.
    async with db.session() as s:
        rows = await s.execute(
            text(
                "SELECT type, data FROM platform.outbox WHERE tenant_id = :t"
                " AND type LIKE 'plexica.user.%' ORDER BY seq"
            ),
            {"t": tenant.id},
        )
        user_events = [(r.type, r.data) for r in rows]
    assert [t for t, _ in user_events] == ["plexica.user.invited", "plexica.user.role_changed"]
    assert user_events[1][1] == {
        "user_id": uid,
        "before": ["member"],
        "after": ["member", "tenant_admin"],
    }


async def test_plugin_permissions_granted_per_tenant(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    a = await provision(db, live)
    b = await provision(db, live)
    admin_a = bearer(
        await login(
            http, live, a.realm, a.admin_email, await set_password(db, a.realm, a.admin_email)
        )
    )
    admin_b = bearer(
        await login(
            http, live, b.realm, b.admin_email, await set_password(db, b.realm, b.admin_email)
        )
    )
    bob = (
        await http.post(live.url + "/v1/users", headers=admin_a, json={"email": "bob@a.example"})
    ).json()
    granted = await http.post(
        live.url + "/v1/roles/member/permissions",
        headers=admin_a,
        json={"permissions": ["crm:deal:write"]},
    )
    assert granted.status_code == 200
    assert "crm:deal:write" in granted.json()["permissions"]
    bad = await http.post(
        live.url + "/v1/roles/member/permissions",
        headers=admin_a,
        json={"permissions": ["DROP TABLE"]},
    )
    assert bad.status_code == 422

    member = await login(http, live, a.realm, "bob@a.example", bob["initial_password"])
    me = (await http.get(live.url + "/v1/me", headers=bearer(member))).json()
    assert me["permissions"] == ["crm:deal:write"]
    other = (await http.get(live.url + "/v1/roles/member/permissions", headers=admin_b)).json()
    assert other["permissions"] == []

    revoked = await http.delete(
        live.url + "/v1/roles/member/permissions/crm:deal:write", headers=admin_a
    )
    assert revoked.json()["permissions"] == []
    me = (await http.get(live.url + "/v1/me", headers=bearer(member))).json()
    assert me["permissions"] == []

    admin_me = (await http.get(live.url + "/v1/me", headers=admin_a)).json()
    demote = await http.put(
        live.url + f"/v1/users/{admin_me['subject']}/roles",
        headers=admin_a,
        json={"roles": ["member"]},
    )
    assert demote.status_code == 403


async def test_audit_scopes_and_login_failures(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    a = await provision(db, live)
    b = await provision(db, live)
    admin_a = bearer(
        await login(
            http, live, a.realm, a.admin_email, await set_password(db, a.realm, a.admin_email)
        )
    )
    admin_b = bearer(
        await login(
            http, live, b.realm, b.admin_email, await set_password(db, b.realm, b.admin_email)
        )
    )
    await http.post(live.url + "/v1/users", headers=admin_a, json={"email": "only-a@example.com"})

    from plexica.identity.client import LoginError, password_login

    with pytest.raises(LoginError, match="Invalid email or password"):
        await password_login(http, live.issuer(b.realm), b.admin_email, "wrong password!")

    seen_by_b = (await http.get(live.url + "/v1/audit", headers=admin_b)).json()["items"]
    assert {e["tenant_id"] for e in seen_by_b} == {str(b.id)}
    failure = next(e for e in seen_by_b if e["action"] == "identity.login.failed")
    assert failure["actor"] == b.admin_email
    assert "address" in failure["after"]

    op = bearer(await login(http, live, OPERATOR_REALM, operator.email, operator.password))
    me = (await http.get(live.url + "/v1/me", headers=op)).json()
    assert me["is_operator"] is True
    assert me["tenant_id"] is None
    everything = (await http.get(live.url + "/v1/audit?limit=500", headers=op)).json()["items"]
    assert {str(a.id), str(b.id)} <= {e["tenant_id"] for e in everything}
    only_failures = (
        await http.get(live.url + "/v1/audit?action=identity.login.failed", headers=op)
    ).json()
    assert {e["action"] for e in only_failures["items"]} == {"identity.login.failed"}


async def test_login_is_throttled(live: Live, db: Database, http: httpx.AsyncClient) -> None:
    from plexica.identity.client import LoginError, password_login

    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    messages = []
    for _ in range(6):
        try:
            await password_login(
                http, live.issuer(tenant.realm), tenant.admin_email, "guess-guess-guess"
            )
        except LoginError as exc:
            messages.append(str(exc))
    assert messages[:5] == ["Invalid email or password."] * 5
    assert messages[5].startswith("Too many failed attempts")
    # Even the right password is refused while the account is throttled.
    with pytest.raises(LoginError, match=r"^Too many failed attempts"):
        await password_login(http, live.issuer(tenant.realm), tenant.admin_email, password)
    # Another account from the same address is not locked out by this one.
    other = await provision(db, live)
    assert await login(
        http,
        live,
        other.realm,
        other.admin_email,
        await set_password(db, other.realm, other.admin_email),
    )


async def test_admin_resets_a_password_in_their_own_realm_only(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    a = await provision(db, live)
    b = await provision(db, live)
    admin_a = bearer(
        await login(
            http, live, a.realm, a.admin_email, await set_password(db, a.realm, a.admin_email)
        )
    )
    admin_b = bearer(
        await login(
            http, live, b.realm, b.admin_email, await set_password(db, b.realm, b.admin_email)
        )
    )
    bob = (
        await http.post(live.url + "/v1/users", headers=admin_a, json={"email": "bob@a.example"})
    ).json()
    uid = bob["user"]["id"]

    reset = await http.post(live.url + f"/v1/users/{uid}/reset-password", headers=admin_a)
    assert reset.status_code == 200, reset.text
    body = reset.json()
    assert body["user"]["email"] == "bob@a.example"
    assert body["password"]
    assert body["password"] != bob["initial_password"]
    # The new password signs in; the old one no longer does.
    member = await login(http, live, a.realm, "bob@a.example", body["password"])
    with pytest.raises(LoginError):
        await login(http, live, a.realm, "bob@a.example", bob["initial_password"])

    # Another tenant's admin does not see the user: it is not in their realm.
    other = await http.post(live.url + f"/v1/users/{uid}/reset-password", headers=admin_b)
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    unknown = await http.post(
        live.url + "/v1/users/00000000-0000-0000-0000-000000000000/reset-password",
        headers=admin_a,
    )
    assert unknown.status_code == 404
    # A member without identity:users:write is denied.
    denied = await http.post(live.url + f"/v1/users/{uid}/reset-password", headers=bearer(member))
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"

    entries = (await http.get(live.url + "/v1/audit", headers=admin_a)).json()["items"]
    resets = [e for e in entries if e["action"] == "identity.user.password_reset"]
    assert len(resets) == 1
    assert resets[0]["actor"] == a.admin_email
    assert resets[0]["target"] == f"user:{uid}"
    assert resets[0]["tenant_id"] == str(a.id)
    assert body["password"] not in json.dumps(resets[0])
    after_b = (await http.get(live.url + "/v1/audit", headers=admin_b)).json()["items"]
    assert "identity.user.password_reset" not in [e["action"] for e in after_b]
