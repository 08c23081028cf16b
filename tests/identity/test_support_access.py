"""Support access (ADR 0240) on the real core: a tenant admin allows it for a window, an operator
acts as one of the tenant's users with a token that carries both identities (``act``), every
action is audited with both, and refusals (not allowed, expired, revoked, wrong caller) are
clear and audited."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt

from plexica.identity.bootstrap import OperatorCredentials
from plexica.identity.service import OPERATOR_REALM, now_utc
from plexica.kit.db import Database
from tests.identity.conftest import (
    Live,
    add_user,
    admin_bearer,
    bearer,
    login,
    provision,
    wait_until,
)

ACCESS, SESSIONS = "/v1/support-access", "/v1/support-sessions"


async def _operator(
    http: httpx.AsyncClient, live: Live, ops: OperatorCredentials
) -> dict[str, str]:
    return bearer(await login(http, live, OPERATOR_REALM, ops.email, ops.password))


def _code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


async def _audit(
    http: httpx.AsyncClient, live: Live, h: dict[str, str], action: str
) -> list[dict[str, Any]]:
    got = await http.get(live.url + "/v1/audit", headers=h, params={"action": action})
    assert got.status_code == 200, got.text
    return list(got.json()["items"])


async def test_an_operator_acts_as_a_user_only_while_the_tenant_allows_it(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    tenant = await provision(db, live)
    admin = await admin_bearer(db, live, http, tenant)
    ops = await _operator(http, live, operator)
    start = {"tenant": tenant.slug, "email": tenant.admin_email}

    refused = await http.post(live.url + SESSIONS, headers=ops, json=start)
    assert (refused.status_code, _code(refused)) == (403, "support_access_not_granted")
    logged = await _audit(http, live, admin, "identity.support.session_refused")
    assert logged[0]["after"]["reason"] == "support_access_not_granted"
    assert logged[0]["actor"] == operator.email

    granted = await http.put(live.url + ACCESS, headers=admin, json={"hours": 2})
    assert granted.status_code == 200, granted.text
    assert (await http.put(live.url + ACCESS, headers=admin, json={"hours": 73})).status_code == 422

    started = await http.post(live.url + SESSIONS, headers=ops, json=start)
    assert started.status_code == 201, started.text
    body = started.json()
    assert "refresh_token" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["act"]["email"] == operator.email
    assert claims["email"] == tenant.admin_email
    assert 0 < claims["exp"] - claims["iat"] <= 15 * 60
    support = bearer(body["access_token"])

    me = (await http.get(live.url + "/v1/me", headers=support)).json()
    assert me["email"] == tenant.admin_email
    made = await http.post(
        live.url + "/v1/users", headers=support,
        json={"email": f"new-{uuid.uuid4().hex[:6]}@{tenant.slug}.example", "roles": ["member"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    both = f"{operator.email} as {tenant.admin_email}"
    assert (await _audit(http, live, admin, "identity.user.created"))[0]["actor"] == both
    assert (await _audit(http, live, admin, "identity.support.session_started"))[0]["actor"] == (
        operator.email
    )
    # The operator in the session cannot widen their own access.
    again = await http.put(live.url + ACCESS, headers=support, json={"hours": 72})
    assert (again.status_code, _code(again)) == (403, "support_session_forbidden")

    status = (await http.get(live.url + ACCESS, headers=admin)).json()
    assert status["grant"] is not None
    assert status["sessions"][0]["operator_email"] == operator.email

    revoked = await http.delete(live.url + ACCESS, headers=admin)
    assert revoked.status_code == 200, revoked.text

    async def refused_now() -> bool:
        return (await http.get(live.url + "/v1/me", headers=support)).status_code == 401

    await wait_until(refused_now, timeout=30)
    ended = (await _audit(http, live, admin, "identity.support.revoked"))[0]
    assert ended["after"]["sessions_ended"] == [body["session"]["id"]]
    after = await http.post(live.url + SESSIONS, headers=ops, json=start)
    assert (after.status_code, _code(after)) == (403, "support_access_revoked")


async def test_an_expired_grant_is_refused_clearly_and_audited(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials,
    clock: list[datetime],
) -> None:  # fmt: skip
    tenant = await provision(db, live)
    admin = await admin_bearer(db, live, http, tenant)
    ops = await _operator(http, live, operator)
    assert (await http.put(live.url + ACCESS, headers=admin, json={"hours": 1})).status_code == 200
    users_before = (await http.get(live.url + "/v1/users", headers=admin)).json()

    clock.append(now_utc() + timedelta(hours=1, minutes=1))
    start = {"tenant": tenant.slug, "email": tenant.admin_email}
    refused = await http.post(live.url + SESSIONS, headers=ops, json=start)
    assert (refused.status_code, _code(refused)) == (403, "support_access_expired")
    assert "expired at" in refused.json()["error"]["message"]
    assert refused.json()["error"]["details"]["granted_until"]
    logged = (await _audit(http, live, admin, "identity.support.session_refused"))[0]
    assert logged["after"]["reason"] == "support_access_expired"
    assert logged["after"]["user"] == tenant.admin_email
    assert (await http.get(live.url + "/v1/users", headers=admin)).json() == users_before
    assert (await http.get(live.url + ACCESS, headers=admin)).json()["grant"] is None


async def test_a_session_ends_with_its_grant_window_and_on_request(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials,
    clock: list[datetime],
) -> None:  # fmt: skip
    tenant = await provision(db, live)
    admin = await admin_bearer(db, live, http, tenant)
    ops = await _operator(http, live, operator)
    # Granted (for an hour) 58 minutes ago: a session started now ends with the grant.
    clock.append(now_utc() - timedelta(minutes=58))
    assert (await http.put(live.url + ACCESS, headers=admin, json={"hours": 1})).status_code == 200
    clock.clear()
    start = {"tenant": tenant.slug, "email": tenant.admin_email}
    started = (await http.post(live.url + SESSIONS, headers=ops, json=start)).json()
    assert 0 < started["expires_in"] <= 2 * 60 + 1

    support = bearer(started["access_token"])
    ended = await http.post(live.url + SESSIONS + "/current/end", headers=support)
    assert ended.status_code == 204, ended.text
    assert (await http.get(live.url + "/v1/me", headers=support)).status_code == 401
    logged = (await _audit(http, live, admin, "identity.support.session_ended"))[0]
    assert logged["actor"] == f"{operator.email} as {tenant.admin_email}"


async def test_only_the_tenants_admin_grants_and_only_an_operator_starts(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    tenant, other = await provision(db, live), await provision(db, live)
    admin, other_admin = (
        await admin_bearer(db, live, http, tenant), await admin_bearer(db, live, http, other)
    )  # fmt: skip
    member_email = f"mo@{tenant.slug}.example"
    member = bearer(await login(
        http, live, tenant.realm, member_email,
        await add_user(db, live, tenant.realm, member_email, {"member"}),
    ))  # fmt: skip

    # The other tenant's admin grants only for their own tenant.
    assert (
        await http.put(live.url + ACCESS, headers=other_admin, json={"hours": 1})
    ).status_code == 200
    ops = await _operator(http, live, operator)
    start = {"tenant": tenant.slug, "email": tenant.admin_email}
    refused = await http.post(live.url + SESSIONS, headers=ops, json=start)
    assert (refused.status_code, _code(refused)) == (403, "support_access_not_granted")

    assert (await http.put(live.url + ACCESS, headers=member, json={"hours": 1})).status_code == 403
    assert (await http.put(live.url + ACCESS, headers=ops, json={"hours": 1})).status_code == 403
    assert (await http.put(live.url + ACCESS, headers=admin, json={"hours": 1})).status_code == 200
    for caller in (admin, member, other_admin):
        assert (await http.post(live.url + SESSIONS, headers=caller, json=start)).status_code == 403
    unknown = await http.post(
        live.url + SESSIONS, headers=ops, json={"tenant": tenant.slug, "email": "no@x.example"}
    )
    assert (unknown.status_code, _code(unknown)) == (404, "user_not_found")
    assert (await http.post(live.url + SESSIONS, headers=ops, json=start)).status_code == 201
