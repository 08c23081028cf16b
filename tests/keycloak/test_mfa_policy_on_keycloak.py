"""The tenant's sign-in policy applied to its Keycloak realm (ADR 0245): with two-step sign-in
required, an existing user signing in is shown Keycloak's OTP setup instead of coming back with
a code, and users made later get the same required action; optional again, they sign in as
before. Password length and session lifetimes become the realm's settings."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

import httpx

from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_realm import WEB_CLIENT
from tests.keycloak import test_platform_on_keycloak as base
from tests.keycloak.conftest import _FORM_ACTION, REDIRECT_URI, browser_login, pkce_pair

platform = base.platform  # the core in Keycloak mode, one per module
POLICY = "/v1/security-policy"


async def _signed_in_page(issuer: str, email: str, password: str) -> httpx.Response:
    """What a browser ends on after the login form: Keycloak's redirect back to the shell with a
    code, or the page Keycloak shows instead (redirects within Keycloak followed, its Secure
    cookies passed by hand as ``browser_login`` does)."""
    _, challenge = pkce_pair()
    cookies: dict[str, str] = {}

    def jar() -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}

    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(
            f"{issuer}/protocol/openid-connect/auth",
            params={"client_id": WEB_CLIENT, "response_type": "code", "scope": "openid",
                    "redirect_uri": REDIRECT_URI, "state": secrets.token_urlsafe(16),
                    "code_challenge": challenge, "code_challenge_method": "S256"},
        )  # fmt: skip
        assert page.status_code == 200, page.text[:300]
        cookies.update(page.cookies.items())
        match = _FORM_ACTION.search(page.text)
        assert match, page.text[:300]
        answer = await http.post(
            html.unescape(match.group(1)),
            data={"username": email, "password": password, "credentialId": ""},
            headers=jar(),
        )
        for _ in range(5):
            cookies.update(answer.cookies.items())
            location = answer.headers.get("location", "")
            if answer.status_code != 302 or location.startswith(REDIRECT_URI):
                return answer
            answer = await http.get(location, headers=jar())
        raise AssertionError(f"redirected on and on: {answer.headers.get('location')}")


def _otp_setup(page: httpx.Response) -> bool:
    return page.status_code == 200 and 'id="kc-totp-settings-form"' in page.text


async def _required_actions(kc: KeycloakAdapter, realm: str, email: str) -> list[str]:
    found = await kc._call(
        "GET", f"/admin/realms/{realm}/users", params={"email": email, "exact": "true"}
    )
    return list(found.json()[0].get("requiredActions") or [])


async def _realm(kc: KeycloakAdapter, realm: str) -> dict[str, Any]:
    return dict((await kc._call("GET", f"/admin/realms/{realm}")).json())


async def test_requiring_mfa_sends_keycloak_users_to_otp_setup_until_it_is_optional_again(
    platform: base.Platform, kc: KeycloakAdapter
) -> None:
    op = await base._operator(kc)
    tenant = await base._tenant(platform, op)
    realm, issuer = tenant["realm"], kc.issuer_url(tenant["realm"])
    email, password = f"zoe@{tenant['slug']}.example", secrets.token_urlsafe(16)
    await kc.create_user(realm, email, password, frozenset({"member"}))
    admin_tokens = await browser_login(issuer, tenant["email"], tenant["password"])
    member_tokens = await browser_login(issuer, email, password)
    assert admin_tokens is not None
    assert member_tokens is not None
    admin = base.bearer(admin_tokens["access_token"])
    member = base.bearer(member_tokens["access_token"])
    api = platform.http

    assert (await api.get(POLICY, headers=admin)).json()["mfa_required"] is False
    refused = await api.put(POLICY, headers=member, json={"mfa_required": True})
    assert refused.status_code == 403, refused.text

    wanted = {
        "mfa_required": True,
        "password_min_length": 14,
        "session_max_hours": 10,
        "session_idle_minutes": 90,
    }
    done = await api.put(POLICY, headers=admin, json=wanted)
    assert done.status_code == 200, done.text
    assert (await api.get(POLICY, headers=admin)).json() == wanted
    assert (await api.get("/v1/me/password-policy", headers=member)).json()["min_length"] == 14
    settings = await _realm(kc, realm)
    assert re.search(r"(^| )length\(14\)( |$)", settings["passwordPolicy"])
    assert (settings["ssoSessionMaxLifespan"], settings["ssoSessionIdleTimeout"]) == (36000, 5400)

    # The existing user is shown Keycloak's OTP setup, with its secret, instead of a code.
    page = await _signed_in_page(issuer, email, password)
    assert _otp_setup(page), (page.status_code, page.headers.get("location"), page.text[:500])
    assert 'id="totp"' in page.text
    assert 'name="totpSecret"' in page.text
    assert "CONFIGURE_TOTP" in await _required_actions(kc, realm, email)
    # A user made after the change has it too (the realm's default action).
    later = f"max@{tenant['slug']}.example"
    await kc.create_user(realm, later, secrets.token_urlsafe(16), frozenset({"member"}))
    assert await _required_actions(kc, realm, later) == ["CONFIGURE_TOTP"]
    # Applying the same policy again changes nothing and is not audited twice.
    again = await api.put(POLICY, headers=admin, json=wanted)
    assert again.status_code == 200, again.text
    assert await _required_actions(kc, realm, email) == ["CONFIGURE_TOTP"]

    optional = await api.put(POLICY, headers=admin, json={**wanted, "mfa_required": False})
    assert optional.status_code == 200, optional.text
    assert (await api.get(POLICY, headers=admin)).json()["mfa_required"] is False
    assert await _required_actions(kc, realm, email) == []
    assert await _required_actions(kc, realm, later) == []
    page = await _signed_in_page(issuer, email, password)
    assert page.status_code == 302, page.text[:500]
    assert "code=" in page.headers["location"]
    assert await browser_login(issuer, email, password) is not None
    newest = f"ann@{tenant['slug']}.example"
    await kc.create_user(realm, newest, secrets.token_urlsafe(16), frozenset({"member"}))
    assert await _required_actions(kc, realm, newest) == []

    entries = (
        await api.get("/v1/audit", headers=admin, params={"action": "identity.policy.updated"})
    ).json()["items"]
    assert [e["after"] for e in entries] == [
        {"mfa_required": False},
        {"mfa_required": True, "password_min_length": 14, "session_max_hours": 10,
         "session_idle_minutes": 90},
    ]  # fmt: skip
    assert {e["actor"] for e in entries} == {tenant["email"]}
