"""Account protection per tenant in the built-in provider (ADR 0243), on the core served on a
real port over real PostgreSQL: the password policy where a password is chosen, the lifetimes of
sign-in sessions (the core's clock set by the test), and lockout counted in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from plexica.identity.client import LoginError, password_login
from plexica.identity.service import CLI_CLIENT, now_utc
from plexica.identity.throttle import Limits, PostgresThrottle
from plexica.kit.db import Database
from tests.identity.conftest import Live, add_user, admin_bearer, bearer, provision

POLICY, PASSWORD = "/v1/security-policy", "/v1/me/password"


async def _put(http: httpx.AsyncClient, live: Live, h: dict[str, str], **changes: Any) -> Any:
    body = {**(await http.get(live.url + POLICY, headers=h)).json(), **changes}
    return await http.put(live.url + POLICY, headers=h, json=body)


def _field_error(answer: httpx.Response) -> tuple[str, str]:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    detail = error["details"][0]
    return str(detail["loc"][-1]), str(detail["msg"])


async def _actions(http: httpx.AsyncClient, live: Live, h: dict[str, str]) -> list[dict[str, Any]]:
    return list((await http.get(live.url + "/v1/audit", headers=h)).json()["items"])


async def test_policy_is_validated_and_its_changes_audited(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    h = await admin_bearer(db, live, http, tenant)
    got = (await http.get(live.url + POLICY, headers=h)).json()
    assert got == {
        "mfa_required": False, "password_min_length": 12, "session_max_hours": 8,
        "session_idle_minutes": 480,
    }  # fmt: skip
    assert _field_error(await _put(http, live, h, password_min_length=11))[0] == (
        "password_min_length"
    )
    field, message = _field_error(await _put(http, live, h, session_max_hours=1))
    assert field == "session_idle_minutes"  # 480 minutes of idle time in a 1-hour session
    assert "maximum" in message
    assert (await http.get(live.url + POLICY, headers=h)).json() == got  # nothing changed
    done = await _put(http, live, h, password_min_length=16)
    assert done.status_code == 200, done.text
    entry = next(
        e for e in await _actions(http, live, h) if e["action"] == "identity.policy.updated"
    )
    assert entry["before"] == {"password_min_length": 12}
    assert entry["after"] == {"password_min_length": 16}


async def test_own_password_change_follows_the_tenant_policy(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    h = await admin_bearer(db, live, http, tenant)
    assert (await _put(http, live, h, password_min_length=20)).status_code == 200
    email = f"marguerite@{tenant.slug}.example"
    old = await add_user(db, live, tenant.realm, email, {"member"})
    mine = bearer(
        (await password_login(http, live.issuer(tenant.realm), email, old))["access_token"]
    )
    rules = (await http.get(live.url + "/v1/me/password-policy", headers=mine)).json()
    assert rules == {"min_length": 20, "max_length": 256}

    for weak, why in (
        ("short-but-12+", "Use 20 to 256 characters."),
        ("MARGUERITE-and-more-words", "Do not use your e-mail address in your password."),
        (f"we-love-{tenant.slug}-a-lot", "Do not use your organisation's name in your password."),
    ):
        answer = await http.post(
            live.url + PASSWORD, headers=mine, json={"current_password": old, "new_password": weak}
        )
        assert _field_error(answer) == ("new_password", why)
    await password_login(http, live.issuer(tenant.realm), email, old)  # still the old one
    refused = [
        e for e in await _actions(http, live, h) if e["action"] == "identity.password.refused"
    ]
    assert len(refused) == 3
    assert refused[0]["after"]["field"] == "new_password"
    assert "short-but" not in str(refused)  # the rule is kept, never the password

    good = f"a-long-enough-{uuid.uuid4().hex[:8]}"
    answer = await http.post(
        live.url + PASSWORD, headers=mine, json={"current_password": old, "new_password": good}
    )
    assert answer.status_code == 200, answer.text


async def test_admin_created_users_get_passwords_the_policy_accepts(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    h = await admin_bearer(db, live, http, tenant)
    assert (await _put(http, live, h, password_min_length=40)).status_code == 200
    made = await http.post(live.url + "/v1/users", headers=h, json={"email": "x@y.example"})
    assert made.status_code == 201, made.text
    assert len(made.json()["initial_password"]) >= 40
    chosen = await http.post(
        live.url + "/v1/users", headers=h,
        json={"email": "z@y.example", "password": "only-twenty-chars-xx"},
    )  # fmt: skip
    assert _field_error(chosen)[0] == "password"
    users = {u["email"] for u in (await http.get(live.url + "/v1/users", headers=h)).json()}
    assert "z@y.example" not in users


async def _refresh(http: httpx.AsyncClient, live: Live, realm: str, token: str) -> httpx.Response:
    return await http.post(
        live.issuer(realm) + "/protocol/openid-connect/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CLI_CLIENT},
    )


async def test_a_session_past_the_tenant_lifetime_cannot_refresh(
    live: Live, db: Database, http: httpx.AsyncClient, clock: list[datetime]
) -> None:
    tenant = await provision(db, live)
    h = await admin_bearer(db, live, http, tenant)
    email = f"sam@{tenant.slug}.example"
    password = await add_user(db, live, tenant.realm, email, {"member"})
    before = await password_login(http, live.issuer(tenant.realm), email, password)
    assert (await _put(http, live, h, session_max_hours=2, session_idle_minutes=60)).is_success
    started = now_utc()
    session = await password_login(http, live.issuer(tenant.realm), email, password)
    assert session["refresh_expires_in"] == pytest.approx(3600, abs=60)

    # Active every 50 minutes: the idle time never runs out, the session's length does.
    token = session["refresh_token"]
    for minutes, left in ((50, 3600), (100, 20 * 60)):
        clock[:] = [started + timedelta(minutes=minutes)]
        answer = await _refresh(http, live, tenant.realm, token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["refresh_expires_in"] == pytest.approx(left, abs=60)
        token = answer.json()["refresh_token"]
    clock[:] = [started + timedelta(minutes=121)]
    over = await _refresh(http, live, tenant.realm, token)
    assert over.status_code == 400
    assert over.json()["error"] == "invalid_grant"

    # Idle beyond 60 minutes ends a session too, well within its length.
    clock.clear()
    fresh = await password_login(http, live.issuer(tenant.realm), email, password)
    clock[:] = [now_utc() + timedelta(minutes=61)]
    assert (await _refresh(http, live, tenant.realm, fresh["refresh_token"])).status_code == 400

    # The session that started before the change keeps the end it had (8 hours then).
    clock[:] = [started + timedelta(minutes=30)]
    kept = await _refresh(http, live, tenant.realm, before["refresh_token"])
    assert kept.status_code == 200, kept.text


async def test_lockout_without_redis_is_shared_by_every_replica(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    email = f"kim@{tenant.slug}.example"
    password = await add_user(db, live, tenant.realm, email, {"member"})
    issuer = live.issuer(tenant.realm)
    messages = []
    for _ in range(6):
        try:
            await password_login(http, issuer, email, "guess-guess-guess")
        except LoginError as exc:
            messages.append(str(exc))
    assert messages[:5] == ["Invalid email or password."] * 5
    assert messages[5].startswith("Too many failed attempts")
    with pytest.raises(LoginError, match="Too many failed attempts"):
        await password_login(http, issuer, email, password)  # even the right one waits

    # Another replica (another throttle on the same database) sees the same counters.
    other = PostgresThrottle(db, Limits())
    assert await other.blocked(tenant.realm, email, "10.1.2.3") > 0
    await other.succeeded(tenant.realm, email)
    await password_login(http, issuer, email, password)
