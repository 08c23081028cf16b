"""Two-step sign-in with TOTP in the built-in provider (ADR 0232) on real PostgreSQL: a user
enrols an authenticator and confirms it, then signs in with a code; a used code, a wrong one, a
used recovery code and a challenge out of tries are refused; the audit log has every step."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlencode

import httpx
import pytest

from plexica.identity.client import LoginError, password_login
from plexica.identity.service import CLI_CLIENT, CLI_REDIRECT
from plexica.kit.db import Database
from tests.identity.conftest import (
    Live,
    add_user,
    admin_bearer,
    bearer,
    form_fields,
    provision,
)
from tests.support.totp import code_at, next_code

MFA = "/v1/me/mfa"


async def _call(
    http: httpx.AsyncClient, live: Live, token: str, path: str, body: object = None
) -> httpx.Response:
    if body is None and path == "":
        return await http.get(live.url + MFA, headers=bearer(token))
    return await http.post(live.url + MFA + path, headers=bearer(token), json=body)


def _code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


async def test_a_user_enrols_totp_and_signs_in_with_codes(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    issuer = live.issuer(tenant.realm)
    email = f"mia@{tenant.slug}.example"
    password = await add_user(db, live, tenant.realm, email, {"member"})
    token = (await password_login(http, issuer, email, password))["access_token"]

    assert (await _call(http, live, token, "")).json() == {
        "enabled": False, "recovery_codes_left": 0
    }  # fmt: skip
    early = await _call(http, live, token, "/totp/confirm", {"code": "123456"})
    assert (early.status_code, _code(early)) == (409, "mfa_not_enabled")
    started = await _call(http, live, token, "/totp")
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    assert started.json()["otpauth_uri"].startswith(f"otpauth://totp/Plexica%20{tenant.slug}:")

    far = await _call(
        http, live, token, "/totp/confirm", {"code": code_at(secret, time.time() + 3600)}
    )
    assert (far.status_code, _code(far)) == (422, "invalid_mfa_code")
    confirmed_at = time.time()
    confirmed = await _call(http, live, token, "/totp/confirm", {"code": code_at(secret)})
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    assert len(set(recovery)) == 10
    again = await _call(http, live, token, "/totp")
    assert (again.status_code, _code(again)) == (409, "mfa_already_enabled")

    with pytest.raises(LoginError, match="two-step"):
        await password_login(http, issuer, email, password)
    # The code that confirmed is used up (or, later, out of the window): refused either way.
    with pytest.raises(LoginError, match="not valid"):
        await password_login(
            http, issuer, email, password, code=lambda: code_at(secret, confirmed_at)
        )
    signed = await password_login(http, issuer, email, password, code=lambda: next_code(secret))
    assert signed["access_token"]

    with pytest.raises(LoginError, match="not valid"):
        await password_login(http, issuer, email, password, code=lambda: "000000x")
    await password_login(http, issuer, email, password, code=recovery[0].upper)
    with pytest.raises(LoginError, match="not valid"):
        await password_login(http, issuer, email, password, code=lambda: recovery[0])
    assert (await _call(http, live, token, "")).json() == {
        "enabled": True, "recovery_codes_left": 9
    }  # fmt: skip

    wrong = await _call(http, live, token, "/disable", {"code": "nope"})
    assert (wrong.status_code, _code(wrong)) == (422, "invalid_mfa_code")
    off = await _call(http, live, token, "/disable", {"code": recovery[1]})
    assert off.status_code == 200, off.text
    await password_login(http, issuer, email, password)

    entries = (
        await http.get(
            live.url + "/v1/audit", headers=await admin_bearer(db, live, http, tenant),
            params={"actor": email},
        )
    ).json()["items"]  # fmt: skip
    actions = [e["action"] for e in reversed(entries) if e["action"] != "identity.login.succeeded"]
    signed_in = [
        e["after"]["two_step"] for e in entries if e["action"] == "identity.login.succeeded"
    ]
    assert sorted(signed_in) == [False, False, True, True]
    assert actions == [
        "identity.mfa.code_failed", "identity.mfa.enabled", "identity.login.mfa_failed",
        "identity.login.mfa_failed", "identity.login.recovery_code_used",
        "identity.login.mfa_failed", "identity.mfa.code_failed", "identity.mfa.disabled",
    ]  # fmt: skip
    disabled = next(e for e in entries if e["action"] == "identity.mfa.disabled")
    assert disabled["after"] == {"proved_by": "recovery"}


async def test_a_challenge_is_good_for_five_tries_in_its_own_realm(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant, other = await provision(db, live), await provision(db, live)
    issuer = live.issuer(tenant.realm)
    email = f"max@{tenant.slug}.example"
    password = await add_user(db, live, tenant.realm, email, {"member"})
    token = (await password_login(http, issuer, email, password))["access_token"]
    secret = (await _call(http, live, token, "/totp")).json()["secret"]
    confirmed = await _call(http, live, token, "/totp/confirm", {"code": code_at(secret)})
    assert confirmed.status_code == 200, confirmed.text

    # An admin of another tenant cannot reset it; the user's own admin can.
    user_id = (await http.get(live.url + "/v1/me", headers=bearer(token))).json()["subject"]
    reset = f"{live.url}/v1/users/{user_id}/mfa/reset"
    stranger = await http.post(reset, headers=await admin_bearer(db, live, http, other))
    assert stranger.status_code == 404, stranger.text
    assert (await _call(http, live, token, "")).json()["enabled"] is True

    url, fields = await _challenged(http, issuer, email, password)
    # Sent to another realm's form (whose CSRF cookie it lacks too): refused.
    elsewhere = url.replace(f"/realms/{tenant.realm}/", f"/realms/{other.realm}/")
    answer = await http.post(elsewhere, data={**fields, "code": next_code(secret)})
    assert answer.status_code in {400, 403}, answer.text
    for _ in range(5):
        answer = await http.post(url, data={**fields, "code": "111111x"})
        assert answer.status_code == 401, answer.text
    answer = await http.post(url, data={**fields, "code": next_code(secret)})
    assert answer.status_code == 400, answer.text
    assert "expired" in answer.text
    # Wrong codes count as failed sign-ins: the account waits now, a right code or not.
    with pytest.raises(LoginError, match="Too many failed attempts"):
        await password_login(http, issuer, email, password, code=lambda: next_code(secret))
    done = await http.post(reset, headers=await admin_bearer(db, live, http, tenant))
    assert done.status_code == 200, done.text
    assert (await _call(http, live, token, "")).json()["enabled"] is False


async def _challenged(
    http: httpx.AsyncClient, issuer: str, email: str, password: str
) -> tuple[str, dict[str, str]]:
    """The second step's form: where it posts and its fields (the CSRF cookie stays in
    ``http``)."""
    query = urlencode({
        "response_type": "code", "client_id": CLI_CLIENT, "redirect_uri": CLI_REDIRECT,
        "scope": "openid", "state": uuid.uuid4().hex, "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    })  # fmt: skip
    url = f"{issuer}/protocol/openid-connect/auth?{query}"
    first = form_fields((await http.get(url)).text)
    second = await http.post(url, data={**first, "username": email, "password": password})
    assert second.status_code == 200, second.text
    assert "challenge" in second.text
    return url, form_fields(second.text)


async def test_a_tenant_requiring_mfa_has_users_enrol_at_their_next_sign_in(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    issuer = live.issuer(tenant.realm)
    email = f"zoe@{tenant.slug}.example"
    password = await add_user(db, live, tenant.realm, email, {"member"})
    member = bearer((await password_login(http, issuer, email, password))["access_token"])
    admin = await admin_bearer(db, live, http, tenant)
    policy = live.url + "/v1/security-policy"
    assert (await http.put(policy, headers=member, json={"mfa_required": True})).status_code == 403
    assert (await http.get(policy, headers=admin)).json()["mfa_required"] is False
    bad = await http.put(policy, headers=admin, json={"mfa_required": "yes", "x": 1})
    assert bad.status_code == 422, bad.text
    done = await http.put(policy, headers=admin, json={"mfa_required": True})
    assert done.status_code == 200, done.text

    url, fields = await _challenged(http, issuer, email, password)
    secret = _secret_of((await http.post(url, data={**fields, "code": "x"})).text)
    wrong = await http.post(url, data={**fields, "code": code_at(secret, time.time() + 3600)})
    assert wrong.status_code == 401, wrong.text
    assert _secret_of(wrong.text) == secret  # the same enrolment, shown again
    codes = await http.post(url, data={**fields, "code": code_at(secret)})
    assert codes.status_code == 200, codes.text
    assert codes.text.count("<li><code>") == 10
    # Until the user goes on, no code is issued; going on needs no code.
    went_on = await http.post(url, data=fields)
    assert went_on.status_code == 303, went_on.text
    assert "code=" in went_on.headers["location"]
    assert (await _call(http, live, member["Authorization"][7:], "")).json()["enabled"] is True
    # The next sign-in asks for a code like any account with TOTP.
    await password_login(http, issuer, email, password, code=lambda: next_code(secret))

    entries = (
        await http.get(live.url + "/v1/audit", headers=admin, params={"action": "identity.*"})
    ).json()["items"]
    actions = [e["action"] for e in entries]
    assert "identity.policy.updated" in actions
    enabled = next(e for e in entries if e["action"] == "identity.mfa.enabled")
    assert (enabled["actor"], enabled["after"]) == (email, {"at_sign_in": True})


def _secret_of(page: str) -> str:
    found = re.search(r'<code id="mfa-secret">([A-Z2-7]+)</code>', page)
    assert found is not None, page
    return found.group(1)
