"""Revocation within 2 s (ADR 0115): a disabled user, a removed role, ended sessions, a sign-out
and a suspended tenant are refused by the core that made the change and by another replica on
the same database (its own verifier, decision cache and revocation list, woken by NOTIFY), at
the API and at the forward-auth decision, without shortening any token's lifetime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import jwt
import pytest

from plexica.app import create_app
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.client import password_login
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.settings import Settings
from tests.conftest import running
from tests.identity.conftest import (
    Live,
    add_user,
    bearer,
    login,
    provision,
    register_tenant,
    set_password,
)

# The bound, measured from the answer of the revoking call. Polled, never slept.
DEADLINE_SECONDS = 2.0
ME = "/v1/me"
LOGOUT = "/protocol/openid-connect/logout"
TOKEN = "/protocol/openid-connect/token"


@pytest.fixture
async def replica(live: Live, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another core on the same database, in this process: nothing shared with ``live``."""
    settings = Settings(database_url=database_url, public_url=live.url)
    async for client in running(create_app(settings)):
        yield client


async def refused_within(status: int, *calls: Callable[[], Awaitable[httpx.Response]]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    for call in calls:
        while (answer := await call()).status_code != status:
            assert answer.status_code == 200, answer.text
            assert time.monotonic() < deadline, f"{call.__name__}: still 200 after the deadline"
            # An in-process call may never yield to the loop: let the listener be woken.
            await asyncio.sleep(0.02)


def probes(
    live: Live, http: httpx.AsyncClient, replica: httpx.AsyncClient, token: str
) -> list[Callable[[], Awaitable[httpx.Response]]]:
    """The API of the replica, its forward-auth decision, and the acting core."""
    forward = {**bearer(token), "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/core" + ME}

    async def api() -> httpx.Response:
        return await replica.get(ME, headers=bearer(token))

    async def decision() -> httpx.Response:
        return await replica.get("/v1/gateway/authorize", headers=forward)

    async def acting() -> httpx.Response:
        return await http.get(live.url + ME, headers=bearer(token))

    return [api, decision, acting]


async def _member(
    db: Database, live: Live, http: httpx.AsyncClient, roles: set[str]
) -> tuple[TenantRef, str, dict[str, str], dict[str, str]]:
    """A registered tenant, its admin's headers, and a user's id and token response."""
    tenant = await provision(db, live)
    await register_tenant(db, tenant)
    admin = await login(
        http, live, tenant.realm, tenant.admin_email,
        await set_password(db, tenant.realm, tenant.admin_email),
    )  # fmt: skip
    email = f"user-{time.monotonic_ns()}@example.com"
    password = await add_user(db, live, tenant.realm, email, roles)
    body = await password_login(http, live.issuer(tenant.realm), email, password)
    me = (await http.get(live.url + ME, headers=bearer(body["access_token"]))).json()
    return tenant, me["subject"], bearer(admin), body


async def _warm(
    calls: list[Callable[[], Awaitable[httpx.Response]]],
) -> None:
    for call in calls:  # accepted, and so remembered by the decision's cache
        answer = await call()
        assert answer.status_code == 200, answer.text


async def test_disabled_user_is_refused_everywhere(
    live: Live, db: Database, http: httpx.AsyncClient, replica: httpx.AsyncClient
) -> None:
    tenant, uid, admin, body = await _member(db, live, http, {"member"})
    token = body["access_token"]
    calls = probes(live, http, replica, token)
    await _warm(calls)
    r = await http.post(live.url + f"/v1/users/{uid}/disable", headers=admin)
    assert r.status_code == 200, r.text
    await refused_within(401, *calls)
    refresh = await http.post(
        live.issuer(tenant.realm) + TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
              "client_id": "plexica-cli"},
    )  # fmt: skip
    assert refresh.json()["error"] == "invalid_grant"
    # The token has not been shortened: it is refused long before its own expiry.
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert exp - time.time() > 60


async def test_removed_role_refuses_the_tokens_that_carry_it(
    live: Live, db: Database, http: httpx.AsyncClient, replica: httpx.AsyncClient
) -> None:
    tenant, uid, admin, body = await _member(db, live, http, {"tenant_admin", "member"})
    token = body["access_token"]
    calls = probes(live, http, replica, token)
    await _warm(calls)
    r = await http.put(
        live.url + f"/v1/users/{uid}/roles", headers=admin, json={"roles": ["member"]}
    )
    assert r.status_code == 200, r.text
    await refused_within(401, *calls)
    # The user carries on with a refreshed token, which has the new roles only.
    fresh = await http.post(
        live.issuer(tenant.realm) + TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
              "client_id": "plexica-cli"},
    )  # fmt: skip
    assert fresh.status_code == 200, fresh.text
    me = await replica.get(ME, headers=bearer(fresh.json()["access_token"]))
    assert (me.status_code, me.json()["roles"]) == (200, ["member"])


async def test_admin_ends_a_users_sessions(
    live: Live, db: Database, http: httpx.AsyncClient, replica: httpx.AsyncClient
) -> None:
    tenant, uid, admin, body = await _member(db, live, http, {"member"})
    calls = probes(live, http, replica, body["access_token"])
    await _warm(calls)
    r = await http.post(live.url + f"/v1/users/{uid}/end-sessions", headers=admin)
    assert r.status_code == 200, r.text
    await refused_within(401, *calls)
    refresh = await http.post(
        live.issuer(tenant.realm) + TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
              "client_id": "plexica-cli"},
    )  # fmt: skip
    assert refresh.json()["error"] == "invalid_grant"
    audit = (await http.get(live.url + "/v1/audit", headers=admin)).json()["items"]
    assert audit[0]["action"] == "identity.user.sessions_ended"
    # A member cannot end anyone's sessions.
    other = await http.post(live.url + f"/v1/users/{uid}/end-sessions", headers=bearer("x"))
    assert other.status_code == 401


@pytest.mark.parametrize("how", ["refresh_token", "id_token_hint"])
async def test_logout_refuses_the_sessions_access_tokens(
    live: Live, db: Database, http: httpx.AsyncClient, replica: httpx.AsyncClient, how: str
) -> None:
    tenant, _, _, body = await _member(db, live, http, {"member"})
    token = body["access_token"]
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["sid"] == sid
    # Another sign-in of the same user is another session: it stays signed in.
    other = await password_login(
        http, live.issuer(tenant.realm), *await _credentials(db, live, tenant, body)
    )
    calls = probes(live, http, replica, token)
    await _warm(calls)
    out = await http.post(
        live.issuer(tenant.realm) + LOGOUT,
        data={"client_id": "plexica-cli", how: body[how.removesuffix("_hint")]},
    )
    assert out.status_code in (200, 204), out.text
    await refused_within(401, *calls)
    refresh = await http.post(
        live.issuer(tenant.realm) + TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
              "client_id": "plexica-cli"},
    )  # fmt: skip
    assert refresh.json()["error"] == "invalid_grant"
    assert (await replica.get(ME, headers=bearer(other["access_token"]))).status_code == 200


async def _credentials(
    db: Database, live: Live, tenant: TenantRef, body: dict[str, str]
) -> tuple[str, str]:
    email = jwt.decode(body["access_token"], options={"verify_signature": False})["email"]
    password = await set_password_keeping_sessions(db, tenant.realm, email)
    return email, password


async def set_password_keeping_sessions(db: Database, realm: str, email: str) -> str:
    """A new password without ending sessions (``set_password`` ends them, as it should)."""
    from plexica.identity import repository, service

    password = service.generate_password()
    async with db.session() as session:
        row = await repository.user_by_email(session, realm, email)
        assert row is not None
        await repository.update_user(
            session, row["id"], password_hash=await service.hash_password(password)
        )
    return password


async def test_suspended_tenant_is_refused_and_reactivation_lets_it_back(
    live: Live, db: Database, http: httpx.AsyncClient, replica: httpx.AsyncClient
) -> None:
    tenant, _, _, body = await _member(db, live, http, {"member"})
    calls = probes(live, http, replica, body["access_token"])
    await _warm(calls)
    step = RealmStep(BuiltinIdentity(db, live.url), db)
    await step.suspend(tenant)
    await refused_within(403, *calls)
    answer = await replica.get(ME, headers=bearer(body["access_token"]))
    assert answer.json()["error"]["code"] == "tenant_suspended"
    await step.resume(tenant)
    deadline = time.monotonic() + DEADLINE_SECONDS
    for call in calls:
        while (await call()).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)


async def test_the_listener_comes_back_after_its_connection_is_killed(db: Database) -> None:
    from sqlalchemy import text

    from plexica.identity import revocation
    from plexica_sdk.revocation import Stamp

    revocations = revocation.core_revocations(db, retry_seconds=0.2)
    await revocations.start()
    try:
        await asyncio.wait_for(revocations.listening.wait(), 30)
        async with db.session() as s:  # every listener of this database: they all come back
            await s.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'plexica-revocations'"
                    " AND datname = current_database()"
                )
            )
        deadline = time.monotonic() + 30
        while revocations.connections < 2:  # noticed the loss, and listens again
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        subject = f"s-{time.monotonic_ns()}"
        async with db.session() as s:
            await revocation.cut_subject(s, "plexica-somewhere", subject)
        stamp = Stamp.of("http://x/realms/plexica-somewhere", {"sub": subject, "iat": 1})
        deadline = time.monotonic() + DEADLINE_SECONDS
        while revocations.check(stamp) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        await revocations.aclose()
