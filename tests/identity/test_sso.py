"""Company sign-in (ADR 0246) with a real company provider: a realm of the test's Keycloak 26
with a confidential client. A tenant admin connects it; a user of the company's domain signs in
there and gets an account with the default role; bad configurations, a wrong client secret, an
address outside the domains and a replayed answer are refused clearly, audited, and make no
account."""

from __future__ import annotations

import html
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from plexica.identity import sso
from plexica.identity.client import pkce_pair
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.service import CLI_CLIENT, CLI_REDIRECT
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from tests.identity.conftest import (
    Live,
    add_user,
    admin_bearer,
    bearer,
    form_fields,
    login,
    provision,
    set_password,
)
from tests.keycloak.conftest import (  # noqa: F401 - the fixture
    company_person,
    company_realm,
    keycloak,
)

_KC_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"')


@dataclass
class Company:
    issuer: str
    realm: str
    client_id: str
    secret: str
    domain: str
    kc: KeycloakAdapter

    async def person(self, email: str) -> str:
        return await company_person(self.kc, self.realm, email)


@pytest.fixture(scope="module")
async def company(keycloak: dict[str, Any]) -> AsyncIterator[Company]:  # noqa: F811 - the fixture
    """The company's own provider: a Keycloak realm whose client sends people back to any
    loopback address (the test's core listens on a free port)."""
    kc = KeycloakAdapter(keycloak["url"], keycloak["admin_user"], keycloak["admin_password"])
    realm, secret = await company_realm(kc, "http://127.0.0.1:*")
    yield Company(
        f"{keycloak['url']}/realms/{realm}", realm, "plexica", secret, f"{realm}.example", kc
    )
    await kc._call("DELETE", f"/admin/realms/{realm}")
    await kc.aclose()


@dataclass
class SignIn:
    """One authorization request of the CLI's client at the tenant's realm."""

    url: str
    state: str
    verifier: str


def _sign_in(live: Live, tenant: TenantRef) -> SignIn:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    query = urlencode({
        "response_type": "code", "client_id": CLI_CLIENT, "redirect_uri": CLI_REDIRECT,
        "scope": "openid email", "state": state, "code_challenge": challenge,
        "code_challenge_method": "S256",
    })  # fmt: skip
    return SignIn(
        f"{live.issuer(tenant.realm)}/protocol/openid-connect/auth?{query}", state, verifier
    )


async def _to_company(
    http: httpx.AsyncClient, start: SignIn, email: str, password: str = "", **more: str
) -> httpx.Response:
    """The tenant's sign-in form posted: the answer (a redirect to the company, or the form)."""
    fields = form_fields((await http.get(start.url)).text)
    return await http.post(
        start.url, data={**fields, "username": email, "password": password, **more}
    )


async def _at_company(http: httpx.AsyncClient, to: str, email: str, password: str) -> str:
    """Signs in on the company's own page; where it sends the browser back."""
    page = await http.get(to)
    assert page.status_code == 200, page.text[:300]
    action = _KC_FORM.search(page.text)
    assert action, page.text[:300]
    # Keycloak's cookies are Secure: a browser sends them to a loopback address, httpx does not.
    cookie = "; ".join(f"{k}={v}" for k, v in page.cookies.items())
    back = await http.post(
        html.unescape(action.group(1)),
        data={"username": email, "password": password, "credentialId": ""},
        headers={"Cookie": cookie},
    )
    assert back.status_code == 302, back.text[:300]
    return back.headers["location"]


async def _tokens(
    http: httpx.AsyncClient, live: Live, tenant: TenantRef, start: SignIn, to: str
) -> dict[str, Any]:
    back = parse_qs(urlsplit(to).query)
    assert to.startswith(CLI_REDIRECT), to
    assert back["state"] == [start.state], to
    answer = await http.post(
        f"{live.issuer(tenant.realm)}/protocol/openid-connect/token",
        data={
            "grant_type": "authorization_code", "code": back["code"][0], "client_id": CLI_CLIENT,
            "redirect_uri": CLI_REDIRECT, "code_verifier": start.verifier,
        },
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _connect(
    http: httpx.AsyncClient, live: Live, admin: dict[str, str], company: Company, **more: Any
) -> httpx.Response:
    body = {
        "display_name": "Company login", "issuer": company.issuer, "client_id": company.client_id,
        "client_secret": company.secret, "domains": [company.domain], **more,
    }  # fmt: skip
    return await http.put(live.url + "/v1/sso", headers=admin, json=body)


async def _users(http: httpx.AsyncClient, live: Live, admin: dict[str, str]) -> dict[str, Any]:
    return {u["email"]: u for u in (await http.get(live.url + "/v1/users", headers=admin)).json()}


async def _audit(
    http: httpx.AsyncClient, live: Live, admin: dict[str, str], action: str
) -> list[dict[str, Any]]:
    found = await http.get(live.url + "/v1/audit", headers=admin, params={"action": action})
    return list(found.json()["items"])


async def test_a_company_user_signs_in_through_the_company_and_gets_an_account(
    live: Live, db: Database, http: httpx.AsyncClient, company: Company
) -> None:
    tenant = await provision(db, live)
    admin = await admin_bearer(db, live, http, tenant)
    connected = await _connect(http, live, admin, company)
    assert connected.status_code == 200, connected.text
    shown = (await http.get(live.url + "/v1/sso", headers=admin)).json()
    assert "client_secret" not in shown
    assert company.secret not in str(shown)
    assert shown["redirect_uri"] == f"{live.issuer(tenant.realm)}/broker/oidc/endpoint"
    assert shown["default_role"] == "member"

    # The sign-in page offers the company, also when shown again after a wrong password.
    wrong = await _to_company(http, _sign_in(live, tenant), tenant.admin_email, "not-it")
    assert wrong.status_code == 401
    assert "Sign in with Company login" in wrong.text

    email = f"alice@{company.domain}"
    idp_password = await company.person(email)
    start = _sign_in(live, tenant)
    # The e-mail alone, no password: its domain is the company's.
    sent = await _to_company(http, start, email)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].startswith(company.issuer + "/protocol/openid-connect/auth")
    back = await _at_company(http, sent.headers["location"], email, idp_password)
    assert back.startswith(shown["redirect_uri"])
    done = await http.get(back)
    assert done.status_code == 303, done.text
    tokens = await _tokens(http, live, tenant, start, done.headers["location"])
    me = (await http.get(live.url + "/v1/me", headers=bearer(tokens["access_token"]))).json()
    assert (me["email"], me["roles"]) == (email, ["member"])
    # The answer is single use.
    assert (await http.get(back)).status_code == 400

    # The next time the account is found, not made again; the button works as well.
    again = _sign_in(live, tenant)
    sent = await _to_company(http, again, email, sso="1")
    back = await _at_company(http, sent.headers["location"], email, idp_password)
    await _tokens(http, live, tenant, again, (await http.get(back)).headers["location"])
    made = await _audit(http, live, admin, "identity.user.created")
    assert [e["after"]["via"] for e in made if e["after"]["email"] == email] == ["sso"]
    logins = await _audit(http, live, admin, "identity.login.succeeded")
    assert [e["after"]["via"] for e in logins if e["actor"] == email] == ["sso", "sso"]

    # The company account has no password here: a password sign-in is refused, and once the
    # tenant requires company sign-in, any password for the domain goes to the company instead.
    other = f"bob@{company.domain}"
    local = await add_user(db, live, tenant.realm, other, {"member"})
    assert await login(http, live, tenant.realm, other, local)
    assert (await _connect(http, live, admin, company, required=True)).status_code == 200
    sent = await _to_company(http, _sign_in(live, tenant), other, local)
    assert sent.status_code == 303
    assert sent.headers["location"].startswith(company.issuer)
    # Addresses outside the domains keep their passwords.
    assert await login(http, live, tenant.realm, tenant.admin_email, await _password(db, tenant))


async def _password(db: Database, tenant: TenantRef) -> str:
    return await set_password(db, tenant.realm, tenant.admin_email)


async def test_bad_configurations_and_answers_are_refused_and_make_no_account(
    live: Live, db: Database, http: httpx.AsyncClient, company: Company
) -> None:
    tenant = await provision(db, live)
    admin = await admin_bearer(db, live, http, tenant)
    member_password = await add_user(db, live, tenant.realm, f"m@{tenant.slug}.example", {"member"})
    member = bearer(
        await login(http, live, tenant.realm, f"m@{tenant.slug}.example", member_password)
    )
    assert (await _connect(http, live, member, company)).status_code == 403

    for issuer, why in (
        ("http://127.0.0.1:9/realms/nowhere", "cannot be reached"),
        (company.issuer + "-other", "answered HTTP 404"),
        ("not a url", "not an issuer URL"),
    ):
        refused = await _connect(http, live, admin, company, issuer=issuer)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["error"]["details"][0]
        assert (detail["loc"][-1], why in detail["msg"]) == ("issuer", True), detail
    assert (await http.get(live.url + "/v1/sso", headers=admin)).status_code == 404
    bad = await _connect(http, live, admin, company, domains=["not a domain"])
    assert bad.status_code == 422
    nul = await _connect(http, live, admin, company, display_name="Acme\x00")
    assert nul.status_code == 422
    # Each protocol takes its own fields; SAML is Keycloak's brokering (ADR 0248).
    saml = "https://login.example.com/saml/metadata?app=1"
    for more, field in (
        ({"metadata_url": saml}, "metadata_url"),
        ({"issuer": None}, "issuer"),
        ({"protocol": "saml", "metadata_url": saml}, "issuer"),
        ({"protocol": "saml", "issuer": None, "client_id": None, "client_secret": None},
         "metadata_url"),
        ({"protocol": "saml", "issuer": None, "client_id": None, "client_secret": None,
          "metadata_url": saml}, "protocol"),
    ):  # fmt: skip
        refused = await _connect(http, live, admin, company, **more)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["loc"][-1] == field, refused.text

    # A wrong client secret shows only at sign-in: a clear page, the reason in the audit log.
    wrong = await _connect(http, live, admin, company, client_secret="not-the-secret")
    assert wrong.status_code == 200, wrong.text
    carol = f"carol@{company.domain}"
    carol_password = await company.person(carol)
    sent = await _to_company(http, _sign_in(live, tenant), carol)
    back = await _at_company(http, sent.headers["location"], carol, carol_password)
    failed = await http.get(back)
    assert failed.status_code == 502
    assert "could not complete the sign-in" in failed.text
    reasons = [e["after"]["reason"] for e in await _audit(http, live, admin, "identity.sso.failed")]
    assert any("token endpoint refused" in r for r in reasons), reasons

    # The stored secret is never sent to another issuer or client: changing them needs it again.
    moved = await _connect(http, live, admin, company, client_secret=None, client_id="other")
    assert moved.status_code == 422, moved.text
    assert moved.json()["error"]["details"][0]["loc"][-1] == "client_secret"

    # An answer carried to another browser counts for nothing (and is spent).
    assert (await _connect(http, live, admin, company)).status_code == 200  # the right secret
    sent = await _to_company(http, _sign_in(live, tenant), carol)
    back = await _at_company(http, sent.headers["location"], carol, carol_password)
    async with httpx.AsyncClient(timeout=10) as elsewhere:
        assert (await elsewhere.get(back)).status_code == 400
    assert (await http.get(back)).status_code == 400

    # An address of another domain at the company's provider gets no account here.
    eve = f"eve@elsewhere-{uuid.uuid4().hex[:6]}.example"
    eve_password = await company.person(eve)
    sent = await _to_company(http, _sign_in(live, tenant), eve, sso="1")
    back = await _at_company(http, sent.headers["location"], eve, eve_password)
    outside = await http.get(back)
    assert outside.status_code == 403
    assert "not one of your organisation's domains" in html.unescape(outside.text)
    users = await _users(http, live, admin)
    assert carol not in users
    assert eve not in users
    # A forged or stale answer is refused.
    forged = f"{live.issuer(tenant.realm)}/broker/oidc/endpoint?state=forged&code=x"
    assert (await http.get(forged)).status_code == 400


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://login.example.com/realms/a", "not an https address"),
        ("https://127.0.0.1/realms/a", "not a public address"),
        ("https://10.1.2.3/realms/a", "not a public address"),
        ("https://[::1]/realms/a", "not a public address"),
        ("https://169.254.169.254/latest", "not a public address"),
        ("https://[::1", "not a URL"),
    ],
)
async def test_outside_development_only_public_https_providers_are_called(
    url: str, why: str
) -> None:
    """An admin must not make the platform call its own network (SSRF)."""
    with pytest.raises(sso.SsoFailure, match=why):
        await sso._allowed(url, local=False)
