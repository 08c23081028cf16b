"""A user changes their own password (``POST /v1/me/password``) with the built-in provider on real
PostgreSQL: the current password is required, the other sessions end and this one stays, the
audit log has it, failures are throttled; and what an attacker tries gets refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from plexica.identity.client import LoginError, password_login
from plexica.identity.keycloak import KeycloakAdapter, PasswordManagedByProviderError
from plexica.identity.service import CLI_CLIENT
from plexica.kit.db import Database
from tests.identity.conftest import Live, add_user, admin_bearer, bearer, provision, wait_until

PATH = "/v1/me/password"


def _new_password() -> str:
    return f"new-password-{uuid.uuid4().hex[:12]}"


async def _refresh(http: httpx.AsyncClient, live: Live, realm: str, token: str) -> httpx.Response:
    return await http.post(
        live.issuer(realm) + "/protocol/openid-connect/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CLI_CLIENT},
    )


async def _subject(http: httpx.AsyncClient, live: Live, token: dict[str, Any]) -> str:
    me = await http.get(live.url + "/v1/me", headers=bearer(token["access_token"]))
    return str(me.json()["subject"])


async def _me_status(http: httpx.AsyncClient, live: Live, token: dict[str, Any]) -> int:
    return (await http.get(live.url + "/v1/me", headers=bearer(token["access_token"]))).status_code


async def test_a_user_changes_their_password_and_their_other_sessions_end(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    issuer = live.issuer(tenant.realm)
    email = f"bob@{tenant.slug}.example"
    old = await add_user(db, live, tenant.realm, email, {"member"})
    here = await password_login(http, issuer, email, old)
    there = await password_login(http, issuer, email, old)
    mine = bearer(here["access_token"])

    wrong = await http.post(
        live.url + PATH, headers=mine,
        json={"current_password": "not-my-password", "new_password": _new_password()},
    )  # fmt: skip
    assert wrong.status_code == 403, wrong.text
    assert wrong.json()["error"]["code"] == "wrong_password"
    assert await _me_status(http, live, there) == 200  # nothing changed, nothing ended
    await password_login(http, issuer, email, old)

    new = _new_password()
    done = await http.post(
        live.url + PATH, headers=mine, json={"current_password": old, "new_password": new}
    )
    assert done.status_code == 200, done.text
    # Two other sessions: the second sign-in above and the one just made to check the password.
    assert done.json() == {"sessions_ended": 2}

    # This session stays: its access token works and its refresh token renews it.
    assert await _me_status(http, live, here) == 200
    renewed = await _refresh(http, live, tenant.realm, here["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert await _me_status(http, live, renewed.json()) == 200
    # The other one is over: its access token is refused, its refresh token too.
    assert (await _refresh(http, live, tenant.realm, there["refresh_token"])).status_code == 400

    async def other_refused() -> bool:
        return await _me_status(http, live, there) == 401

    await wait_until(other_refused, timeout=30)

    await password_login(http, issuer, email, new)
    with pytest.raises(LoginError, match="Invalid email or password"):
        await password_login(http, issuer, email, old)

    entries = (
        await http.get(
            live.url + "/v1/audit",
            headers=await admin_bearer(db, live, http, tenant),
            params={"actor": email, "action": "identity.user.password_*"},
        )
    ).json()["items"]
    assert [e["action"] for e in entries] == [
        "identity.user.password_changed",
        "identity.user.password_change_failed",
    ]
    subject = await _subject(http, live, here)
    assert entries[0]["target"] == entries[1]["target"] == f"user:{subject}"
    assert entries[0]["after"] == {"sessions_ended": 2}
    assert entries[0]["request_id"] == done.headers["x-request-id"]


async def _member(
    live: Live, db: Database, http: httpx.AsyncClient, name: str
) -> tuple[str, str, str, dict[str, str]]:
    """A member of a new tenant, signed in: the issuer, e-mail, password and bearer header."""
    tenant = await provision(db, live)
    issuer = live.issuer(tenant.realm)
    email = f"{name}@{tenant.slug}.example"
    password = await add_user(db, live, tenant.realm, email, {"member"})
    token = await password_login(http, issuer, email, password)
    return issuer, email, password, bearer(token["access_token"])


async def test_bad_input_is_refused_and_changes_nothing(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    issuer, email, password, h = await _member(live, db, http, "alice")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"new_password": _new_password()}, "current_password"),
        ({"current_password": "", "new_password": _new_password()}, "current_password"),
        ({"current_password": password, "new_password": "short"}, "new_password"),
        ({"current_password": password, "new_password": "x" * 257}, "new_password"),
        ({"current_password": password, "new_password": password}, "new_password"),
        ({"current_password": password}, "new_password"),
    ]
    for body, field in cases:
        refused = await http.post(live.url + PATH, headers=h, json=body)
        assert refused.status_code == 422, (body, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "validation_error"
        assert [d["loc"][-1] for d in error["details"]] == [field], body
    not_json = await http.post(live.url + PATH, headers=h, content=b"current_password=x")
    assert not_json.status_code in (415, 422)
    no_token = await http.post(
        live.url + PATH, json={"current_password": password, "new_password": _new_password()}
    )
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "unauthenticated"
    await password_login(http, issuer, email, password)  # still the same password


async def test_nobody_changes_another_users_password(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    issuer = live.issuer(tenant.realm)
    alice, bob = f"alice@{tenant.slug}.example", f"bob@{tenant.slug}.example"
    alice_pw = await add_user(db, live, tenant.realm, alice, {"member"})
    bob_pw = await add_user(db, live, tenant.realm, bob, {"member"})
    bob_token = await password_login(http, issuer, bob, bob_pw)
    h = bearer((await password_login(http, issuer, alice, alice_pw))["access_token"])
    bob_id = await _subject(http, live, bob_token)

    # The body cannot name another user: whose password it is comes from the token alone.
    named = await http.post(
        live.url + PATH, headers=h,
        json={"user_id": bob_id, "current_password": bob_pw,
              "new_password": _new_password()},
    )  # fmt: skip
    assert named.status_code == 422
    assert named.json()["error"]["details"][0]["loc"][-1] == "user_id"
    # Bob's password is not Alice's: checked against her own, it is wrong.
    theirs = await http.post(
        live.url + PATH, headers=h, json={"current_password": bob_pw, "new_password": "x" * 20}
    )
    assert theirs.status_code == 403
    assert theirs.json()["error"]["code"] == "wrong_password"
    # A member cannot reset anyone's password either (that is the admin's users:write).
    reset = await http.post(live.url + f"/v1/users/{bob_id}/reset-password", headers=h)
    assert reset.status_code == 403
    assert reset.json()["error"]["code"] == "forbidden"
    # An admin of another tenant does not find Bob.
    other = await provision(db, live)
    foreign = await http.post(
        live.url + f"/v1/users/{bob_id}/reset-password",
        headers=await admin_bearer(db, live, http, other),
    )
    assert foreign.status_code == 404
    await password_login(http, issuer, bob, bob_pw)
    assert await _me_status(http, live, bob_token) == 200


async def test_wrong_current_passwords_are_throttled_like_sign_in(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    issuer, email, password, h = await _member(live, db, http, "carol")
    for i in range(5):
        wrong = await http.post(
            live.url + PATH, headers=h,
            json={"current_password": f"guess-{i}", "new_password": _new_password()},
        )  # fmt: skip
        assert wrong.status_code == 403, wrong.text
    blocked = await http.post(
        live.url + PATH, headers=h,
        json={"current_password": password, "new_password": _new_password()},
    )  # fmt: skip
    assert blocked.status_code == 429, blocked.text
    assert blocked.json()["error"]["code"] == "too_many_attempts"
    assert 0 < int(blocked.headers["retry-after"]) <= 300
    # Nothing changed, and signing in is counted apart: Carol still signs in.
    await password_login(http, issuer, email, password)


async def test_keycloak_refuses_rather_than_skip_the_check() -> None:
    """The adapter refuses before calling Keycloak at all (ADR 0231): nothing to reach."""
    adapter = KeycloakAdapter("http://127.0.0.1:9", "admin", "admin")
    try:
        with pytest.raises(PasswordManagedByProviderError, match="account console") as refused:
            await adapter.change_password(
                "plexica-acme", "u1", "old-password", "new-password-123", keep_session=None
            )
    finally:
        await adapter.aclose()
    error = refused.value
    assert (error.status, error.code) == (409, "password_managed_by_provider")
    assert error.details == {"account_url": "http://127.0.0.1:9/realms/plexica-acme/account"}
