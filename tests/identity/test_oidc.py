"""A standard OIDC client (authlib) signs in against the built-in provider over real HTTP."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]

from plexica.identity.builtin import BuiltinIdentity
from plexica.kit.db import Database
from tests.identity.conftest import Live, bearer, form_fields, provision, set_password

REDIRECT = "http://app.example/callback"


async def test_discovery_is_keycloak_shaped(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    iss = live.issuer(tenant.realm)
    disc = (await http.get(iss + "/.well-known/openid-configuration")).json()
    assert disc["issuer"] == iss
    assert disc["token_endpoint"] == iss + "/protocol/openid-connect/token"
    assert disc["jwks_uri"] == iss + "/protocol/openid-connect/certs"
    assert disc["code_challenge_methods_supported"] == ["S256"]
    jwks = (await http.get(disc["jwks_uri"])).json()
    assert [k["alg"] for k in jwks["keys"]] == ["RS256"]
    assert "d" not in jwks["keys"][0]  # public part only
    missing = await http.get(live.issuer("plexica-nope") + "/.well-known/openid-configuration")
    assert missing.status_code == 404


async def _browser_login(
    http: httpx.AsyncClient, authorize_url: str, email: str, password: str
) -> httpx.Response:
    page = await http.get(authorize_url)
    assert page.status_code == 200, page.text
    assert 'autocomplete="current-password"' in page.text
    assert "<label" in page.text
    fields = {**form_fields(page.text), "username": email, "password": password}
    return await http.post(authorize_url.split("?", maxsplit=1)[0], data=fields)


async def test_authlib_code_flow_refresh_userinfo(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    adapter = BuiltinIdentity(db, live.url)
    await adapter.create_client(tenant.realm, "test-web", public=True, redirect_uris=(REDIRECT,))
    password = await set_password(db, tenant.realm, tenant.admin_email)
    iss = live.issuer(tenant.realm)
    disc = (await http.get(iss + "/.well-known/openid-configuration")).json()

    nonce = secrets.token_urlsafe(12)
    verifier = secrets.token_urlsafe(48)
    async with AsyncOAuth2Client(
        client_id="test-web", redirect_uri=REDIRECT, scope="openid email",
        code_challenge_method="S256", token_endpoint_auth_method="none",
    ) as oauth:  # fmt: skip
        url, state = oauth.create_authorization_url(
            disc["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        answer = await _browser_login(http, url, tenant.admin_email, password)
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        back = parse_qs(urlsplit(location).query)
        assert back["state"] == [state]
        assert back["iss"] == [iss]

        token = await oauth.fetch_token(
            disc["token_endpoint"], authorization_response=location, code_verifier=verifier
        )
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["iss"] == iss
        assert claims["aud"] == "plexica-api"
        assert claims["azp"] == "test-web"
        assert claims["email"] == tenant.admin_email
        assert claims["tenant_id"] == str(tenant.id)
        assert claims["realm_access"]["roles"] == ["tenant_admin"]

        jwks = jwt.PyJWKSet.from_dict((await http.get(disc["jwks_uri"])).json())
        header = jwt.get_unverified_header(token["id_token"])
        id_claims = jwt.decode(
            token["id_token"], jwks[header["kid"]].key, algorithms=["RS256"],
            audience="test-web", issuer=iss,
        )  # fmt: skip
        assert id_claims["nonce"] == nonce

        # The production verifier (JWKS fetched over HTTP) accepts it on the core API.
        me = await http.get(live.url + "/v1/me", headers=bearer(token["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["tenant_slug"] == tenant.slug
        assert "identity:users:write" in me.json()["permissions"]

        info = await oauth.get(disc["userinfo_endpoint"])
        assert info.json()["email"] == tenant.admin_email

        old_refresh = token["refresh_token"]
        renewed = await oauth.refresh_token(disc["token_endpoint"], refresh_token=old_refresh)
        assert renewed["refresh_token"] != old_refresh
        me = await http.get(live.url + "/v1/me", headers=bearer(renewed["access_token"]))
        assert me.status_code == 200

    # A rotated refresh token used again is refused, and ends the chain it belongs to.
    reuse = await http.post(
        disc["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": old_refresh, "client_id": "test-web"},
    )
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    chain = await http.post(
        disc["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"],
              "client_id": "test-web"},
    )  # fmt: skip
    assert chain.status_code == 400

    # The code was single use.
    again = await http.post(
        disc["token_endpoint"],
        data={"grant_type": "authorization_code", "code": back["code"][0], "client_id": "test-web",
              "redirect_uri": REDIRECT, "code_verifier": verifier},
    )  # fmt: skip
    assert again.json()["error"] == "invalid_grant"


async def test_client_credentials(live: Live, db: Database, http: httpx.AsyncClient) -> None:
    tenant = await provision(db, live)
    made = await BuiltinIdentity(db, live.url).create_client(tenant.realm, "svc-crm", public=False)
    assert made.secret
    iss = live.issuer(tenant.realm)
    async with AsyncOAuth2Client(
        client_id="svc-crm",
        client_secret=made.secret,
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        token = await oauth.fetch_token(
            iss + "/protocol/openid-connect/token", grant_type="client_credentials"
        )
    assert "refresh_token" not in token
    me = (await http.get(live.url + "/v1/me", headers=bearer(token["access_token"]))).json()
    assert me["is_service"] is True
    assert me["client_id"] == "svc-crm"
    assert me["tenant_id"] == str(tenant.id)
    # Service tokens cannot manage users.
    users = await http.get(live.url + "/v1/users", headers=bearer(token["access_token"]))
    assert users.status_code == 403

    wrong = await http.post(
        iss + "/protocol/openid-connect/token",
        data={"grant_type": "client_credentials", "client_id": "svc-crm", "client_secret": "nope"},
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    public = await http.post(
        iss + "/protocol/openid-connect/token",
        data={"grant_type": "client_credentials", "client_id": "plexica-cli"},
    )
    assert public.json()["error"] == "unauthorized_client"


async def test_pkce_is_required_and_checked(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    await BuiltinIdentity(db, live.url).create_client(
        tenant.realm, "test-web", public=True, redirect_uris=(REDIRECT,)
    )
    password = await set_password(db, tenant.realm, tenant.admin_email)
    auth = live.issuer(tenant.realm) + "/protocol/openid-connect/auth"
    no_pkce = await http.get(
        auth,
        params={
            "response_type": "code",
            "client_id": "test-web",
            "redirect_uri": REDIRECT,
            "state": "s",
        },
    )
    assert no_pkce.status_code == 302
    assert parse_qs(urlsplit(no_pkce.headers["location"]).query)["error"] == ["invalid_request"]

    plain = await http.get(
        auth, params={"response_type": "code", "client_id": "test-web", "redirect_uri": REDIRECT,
                      "code_challenge": "x" * 43, "code_challenge_method": "plain"},
    )  # fmt: skip
    assert parse_qs(urlsplit(plain.headers["location"]).query)["error"] == ["invalid_request"]

    # An unregistered redirect is never followed: an error page instead.
    evil = await http.get(
        auth, params={"response_type": "code", "client_id": "test-web",
                      "redirect_uri": "http://evil.example/cb", "code_challenge": "x" * 43,
                      "code_challenge_method": "S256"},
    )  # fmt: skip
    assert evil.status_code == 400
    assert "location" not in evil.headers

    async with AsyncOAuth2Client(
        client_id="test-web", redirect_uri=REDIRECT, code_challenge_method="S256",
        token_endpoint_auth_method="none",
    ) as oauth:  # fmt: skip
        verifier = secrets.token_urlsafe(48)
        url, _ = oauth.create_authorization_url(auth, code_verifier=verifier)
        answer = await _browser_login(http, url, tenant.admin_email, password)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    wrong = await http.post(
        live.issuer(tenant.realm) + "/protocol/openid-connect/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": "test-web",
              "redirect_uri": REDIRECT, "code_verifier": secrets.token_urlsafe(48)},
    )  # fmt: skip
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"


async def test_login_form_needs_csrf_token(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    params = {"response_type": "code", "client_id": "plexica-cli",
              "redirect_uri": "http://127.0.0.1/plexica-cli/callback",
              "code_challenge": "A" * 43, "code_challenge_method": "S256"}  # fmt: skip
    auth = live.issuer(tenant.realm) + "/protocol/openid-connect/auth"
    page = await http.get(auth, params=params)
    fields = form_fields(page.text)
    # A cross-site post carries no cookie of ours.
    async with httpx.AsyncClient() as other:
        forged = await other.post(
            auth, data={**fields, "username": tenant.admin_email, "password": password}
        )
    assert forged.status_code == 400
    assert "location" not in forged.headers
    assert page.headers["x-frame-options"] == "DENY"


async def test_logout_revokes_refresh_token(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    from plexica.identity.client import password_login

    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    iss = live.issuer(tenant.realm)
    body = await password_login(http, iss, tenant.admin_email, password)
    out = await http.post(
        iss + "/protocol/openid-connect/logout",
        data={"client_id": "plexica-cli", "refresh_token": body["refresh_token"]},
    )
    assert out.status_code == 204
    refused = await http.post(
        iss + "/protocol/openid-connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "plexica-cli",
        },
    )
    assert refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("grant", ["password", "implicit", ""])
async def test_unsupported_grants(
    live: Live, db: Database, http: httpx.AsyncClient, grant: str
) -> None:
    tenant = await provision(db, live)
    answer = await http.post(
        live.issuer(tenant.realm) + "/protocol/openid-connect/token",
        data={
            "grant_type": grant,
            "client_id": "plexica-cli",
            "username": tenant.admin_email,
            "password": "x",
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"
