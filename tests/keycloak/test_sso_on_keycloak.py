"""Company sign-in with Keycloak (ADR 0247): ``/v1/sso`` sets up an OpenID Connect identity
provider in the tenant's realm, brokering to the company's own provider (here another realm of
the same Keycloak 26 with a confidential client). A company person signs in to the tenant's realm
by giving an e-mail address of its domains and reaches the platform with the default role; a bad
issuer creates nothing, a member may not change it, the secret is never shown."""

from __future__ import annotations

import html
import secrets
from http.cookiejar import Cookie
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_realm import WEB_CLIENT
from plexica.identity.service import CLI_CLIENT, CLI_REDIRECT
from tests.keycloak import test_platform_on_keycloak as base
from tests.keycloak.conftest import (
    _FORM_ACTION,
    browser_login,
    company_person,
    company_realm,
    pkce_pair,
)

platform = base.platform  # the core in Keycloak mode, one per module
SSO = "/v1/sso"


class Browser:
    """Keycloak's cookies by realm path, sent by hand: they are Secure, and httpx does not send
    them over http (a browser does, to a loopback address)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.cookies: dict[tuple[str, str], str] = {}

    def _keep(self, response: httpx.Response) -> None:
        for cookie in response.cookies.jar:
            assert isinstance(cookie, Cookie)
            if cookie.value:
                self.cookies[cookie.name, cookie.path] = cookie.value
            else:
                self.cookies.pop((cookie.name, cookie.path), None)

    def _headers(self, url: str) -> dict[str, str]:
        path = urlsplit(url).path
        sent = "; ".join(f"{n}={v}" for (n, p), v in self.cookies.items() if path.startswith(p))
        return {"Cookie": sent} if sent else {}

    async def go(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request and Keycloak's redirects after it, up to the CLI's callback."""
        response = await self.http.request(method, url, headers=self._headers(url), **kwargs)
        for _ in range(10):
            self._keep(response)
            location = response.headers.get("location", "")
            if response.status_code not in (302, 303) or location.startswith(CLI_REDIRECT):
                return response
            url = urljoin(url, location)
            response = await self.http.get(url, headers=self._headers(url))
        raise AssertionError(f"redirected on and on: {response.headers.get('location')}")


async def _company_sign_in(issuer: str, email: str, password: str) -> dict[str, Any]:
    """A person of the company signs in to the tenant's realm with the company button, as a
    browser does (code + PKCE of the CLI's client): the tenant realm's tokens."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        browser = Browser(http)
        page = await browser.go(
            "GET", f"{issuer}/protocol/openid-connect/auth",
            params={"client_id": CLI_CLIENT, "response_type": "code", "scope": "openid email",
                    "redirect_uri": CLI_REDIRECT, "state": state, "code_challenge": challenge,
                    "code_challenge_method": "S256"},
        )  # fmt: skip
        assert page.status_code == 200, page.text[:300]
        # The e-mail first: an address at the company's domains goes there (ADR 0250).
        asked = _FORM_ACTION.search(page.text)
        assert asked, page.text[:2000]
        assert 'name="password"' not in page.text
        at_company = await browser.go(
            "POST", html.unescape(asked.group(1)), data={"username": email}
        )
        assert at_company.status_code == 200, (at_company.status_code, at_company.text[:300])
        assert "/realms/company-" in str(at_company.url), at_company.url
        action = _FORM_ACTION.search(at_company.text)
        assert action, at_company.text[:300]
        back = await browser.go(
            "POST", html.unescape(action.group(1)),
            data={"username": email, "password": password, "credentialId": ""},
        )  # fmt: skip
        # No page of Keycloak's first broker login (review profile, link account) in between.
        location = back.headers.get("location", "")
        assert back.status_code == 302, (back.status_code, back.text[:1000])
        assert location.startswith(CLI_REDIRECT), location
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [state], location
        tokens = await http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={"grant_type": "authorization_code", "client_id": CLI_CLIENT,
                  "code": query["code"][0], "redirect_uri": CLI_REDIRECT,
                  "code_verifier": verifier},
        )  # fmt: skip
        assert tokens.status_code == 200, tokens.text
        return dict(tokens.json())


async def _audit(api: httpx.AsyncClient, admin: dict[str, str], action: str) -> list[Any]:
    found = await api.get("/v1/audit", headers=admin, params={"action": action})
    assert found.status_code == 200, found.text
    return list(found.json()["items"])


async def test_a_company_person_signs_in_through_the_tenant_realms_identity_provider(
    platform: base.Platform, kc: KeycloakAdapter, keycloak: dict[str, Any]
) -> None:
    op = await base._operator(kc)
    tenant = await base._tenant(platform, op)
    realm, issuer, slug = tenant["realm"], kc.issuer_url(tenant["realm"]), tenant["slug"]
    member_email, member_password = f"max@{slug}.example", secrets.token_urlsafe(16)
    await kc.create_user(realm, member_email, member_password, frozenset({"member"}))
    admin_tokens = await browser_login(issuer, tenant["email"], tenant["password"])
    member_tokens = await browser_login(issuer, member_email, member_password)
    assert admin_tokens is not None
    assert member_tokens is not None
    admin = base.bearer(admin_tokens["access_token"])
    member = base.bearer(member_tokens["access_token"])
    api = platform.http
    redirect_uri = f"{keycloak['url']}/realms/{realm}/broker/company/endpoint"
    company, secret = await company_realm(kc, redirect_uri)
    body = {
        "display_name": "Acme", "issuer": f"{keycloak['url']}/realms/{company}",
        "client_id": "plexica", "client_secret": secret, "domains": [f"{company}.example"],
        "default_role": "member", "required": False,
    }  # fmt: skip

    assert (await api.get(SSO, headers=admin)).status_code == 404
    refused = await api.put(SSO, headers=member, json=body)
    assert refused.status_code == 403, refused.text
    # A provider that cannot be read is refused on its field, and nothing is made in Keycloak.
    bad = await api.put(
        SSO, headers=admin, json={**body, "issuer": f"{keycloak['url']}/realms/no-such-company"}
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["details"][0]["loc"] == ["body", "issuer"]
    assert await kc.company_sign_in(realm) is None
    no_secret = await api.put(SSO, headers=admin, json={**body, "client_secret": None})
    assert no_secret.status_code == 422, no_secret.text
    assert no_secret.json()["error"]["details"][0]["loc"] == ["body", "client_secret"]
    assert await kc.company_sign_in(realm) is None

    done = await api.put(SSO, headers=admin, json=body)
    assert done.status_code == 200, done.text
    shown = done.json()
    assert secret not in done.text
    assert "client_secret" not in shown
    assert shown["redirect_uri"] == redirect_uri
    assert {k: shown[k] for k in body if k != "client_secret"} == {
        k: v for k, v in body.items() if k != "client_secret"
    }
    got = await api.get(SSO, headers=admin)
    assert got.status_code == 200, got.text
    assert got.json() == shown
    assert secret not in got.text
    idp = (
        await kc._call("GET", f"/admin/realms/{realm}/identity-provider/instances/company")
    ).json()
    assert (idp["providerId"], idp["displayName"], idp["trustEmail"]) == ("oidc", "Acme", True)
    config = idp["config"]
    assert config["issuer"] == body["issuer"]
    assert config["tokenUrl"] == f"{body['issuer']}/protocol/openid-connect/token"
    assert (config["pkceEnabled"], config["pkceMethod"]) == ("true", "S256")
    assert (config["clientAuthMethod"], config["validateSignature"]) == (
        "client_secret_post", "true"
    )  # fmt: skip
    assert config["clientSecret"] == "**********"

    # A person of the company signs in with the company button: an account with the default role.
    person = f"pat@{company}.example"
    tokens = await _company_sign_in(issuer, person, await company_person(kc, company, person))
    me = await api.get("/v1/me", headers=base.bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == person
    assert me.json()["tenant_slug"] == slug
    assert "member" in me.json()["roles"]
    assert "tenant_admin" not in me.json()["roles"]
    users = {u.email: u for u in await kc.list_users(realm)}
    assert users[person].roles == frozenset({"member"})

    # Required (ADR 0249): a password of the company's domains is refused, even the right one;
    # other addresses keep theirs, the company's people still come through the company.
    local_email, local_password = f"lee@{company}.example", secrets.token_urlsafe(16)
    await kc.create_user(realm, local_email, local_password, frozenset({"member"}))
    signed_in = await browser_login(issuer, local_email, local_password)
    assert signed_in is not None
    strict = await api.put(SSO, headers=admin, json={**body, "required": True})
    assert strict.status_code == 200, strict.text
    assert await browser_login(issuer, local_email, local_password) is None
    # The session it had from its password ends too: its refresh token is refused.
    async with httpx.AsyncClient(timeout=30) as http:
        refreshed = await http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={"grant_type": "refresh_token", "client_id": WEB_CLIENT,
                  "refresh_token": signed_in["refresh_token"]},
        )  # fmt: skip
    assert refreshed.status_code == 400, refreshed.text
    async with httpx.AsyncClient(timeout=30) as http:  # nor around the browser: no password grant
        grant = await http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={"grant_type": "password", "client_id": "admin-cli", "username": local_email,
                  "password": local_password},
        )  # fmt: skip
    assert grant.status_code in (400, 401), grant.text
    assert "access_token" not in grant.text
    assert await browser_login(issuer, member_email, member_password) is not None
    kim = f"kim@{company}.example"
    assert await _company_sign_in(issuer, kim, await company_person(kc, company, kim))
    relaxed = await api.put(SSO, headers=admin, json={**body, "required": False})
    assert relaxed.status_code == 200, relaxed.text
    assert await browser_login(issuer, local_email, local_password) is not None

    # Changed without a secret: the one Keycloak holds is kept, and still works.
    renamed = await api.put(SSO, headers=admin, json={**body, "display_name": "Acme Inc.",
                                                        "client_secret": None})  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["display_name"] == "Acme Inc."
    other = f"sam@{company}.example"
    assert await _company_sign_in(issuer, other, await company_person(kc, company, other))

    entries = await _audit(api, admin, "identity.sso.updated")
    assert [e["after"]["secret_set"] for e in entries] == [False, True, True, True]
    assert [e["after"]["required"] for e in entries] == [False, False, True, False]
    assert all(secret not in str(e) for e in entries)
    assert entries[-1]["before"] is None

    # The same provider slot as SAML (ADR 0248): the OpenID Connect one is replaced. A page that
    # is no metadata is refused on its field, the old provider kept.
    saml = {k: v for k, v in body.items() if k not in ("issuer", "client_id", "client_secret")}
    saml |= {"protocol": "saml", "display_name": "Acme SAML"}
    not_metadata = await api.put(
        SSO, headers=admin, json={**saml, "metadata_url": f"{keycloak['url']}/realms/{company}"}
    )
    assert not_metadata.status_code == 422, not_metadata.text
    assert not_metadata.json()["error"]["details"][0]["loc"] == ["body", "metadata_url"]
    assert (await api.get(SSO, headers=admin)).json()["protocol"] == "oidc"
    idp_metadata = f"{keycloak['url']}/realms/{company}/protocol/saml/descriptor"
    switched = await api.put(SSO, headers=admin, json={**saml, "metadata_url": idp_metadata})
    assert switched.status_code == 200, switched.text
    shown = switched.json()
    assert (shown["protocol"], shown["client_id"]) == ("saml", None)
    assert shown["issuer"] == f"{keycloak['url']}/realms/{company}"  # the provider's entity ID
    assert (shown["metadata_url"], shown["redirect_uri"]) == (idp_metadata, redirect_uri)
    assert shown["entity_id"] == f"{keycloak['url']}/realms/{realm}"
    idp = (
        await kc._call("GET", f"/admin/realms/{realm}/identity-provider/instances/company")
    ).json()
    assert (idp["providerId"], idp["config"]["validateSignature"]) == ("saml", "true")
    last = (await _audit(api, admin, "identity.sso.updated"))[0]
    assert (last["before"]["protocol"], last["after"]["protocol"]) == ("oidc", "saml")
    # Metadata of a service provider (the realm's own), not of an identity provider: refused.
    sp_metadata = f"{redirect_uri}/descriptor"
    not_idp = await api.put(SSO, headers=admin, json={**saml, "metadata_url": sp_metadata})
    assert not_idp.status_code == 422, not_idp.text
    assert not_idp.json()["error"]["code"] == "identity_invalid", not_idp.text
    assert (await api.get(SSO, headers=admin)).json() == shown

    removed = await api.delete(SSO, headers=admin)
    assert removed.status_code == 204, removed.text
    assert (await api.get(SSO, headers=admin)).status_code == 404
    assert await kc.company_sign_in(realm) is None
    assert (await api.delete(SSO, headers=admin)).status_code == 404
    assert len(await _audit(api, admin, "identity.sso.removed")) == 1
    await kc._call("DELETE", f"/admin/realms/{company}")
