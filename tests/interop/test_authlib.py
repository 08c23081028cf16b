"""Authlib (Python) as the relying party and PyJWT for JWKS verification, against both identity
modes; and the error responses of every endpoint, as a relying party sees them on the wire."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]
from authlib.jose import JsonWebKey  # type: ignore[import-untyped]
from authlib.jose import jwt as authlib_jwt
from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]

from tests.interop.conftest import CALLBACK, SIGNED_OUT, Provider, browser_login


async def _discovery(provider: Provider) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.get(provider.issuer + "/.well-known/openid-configuration")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _id_token(
    provider: Provider, token: dict[str, Any], jwks: Any, nonce: str | None
) -> dict[str, Any]:
    """Authlib's own ID token validation (OIDC Core §3.1.3.7, at_hash when present)."""
    params = {"client_id": provider.client_id, "access_token": token["access_token"]}
    claims = authlib_jwt.decode(
        token["id_token"], jwks, claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": provider.issuer},
                        "aud": {"essential": True, "value": provider.client_id}},
        claims_params={**params, "nonce": nonce} if nonce else params,
    )  # fmt: skip
    claims.validate(leeway=30)
    return dict(claims)


def _pyjwt(provider: Provider, jwks_uri: str, token: str, audience: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=audience, issuer=provider.issuer, leeway=30
    )
    return dict(claims)


async def test_code_pkce_userinfo_refresh_rotation_and_reuse(provider: Provider) -> None:
    disc = await _discovery(provider)
    nonce, verifier = secrets.token_urlsafe(12), secrets.token_urlsafe(48)
    async with AsyncOAuth2Client(
        client_id=provider.client_id, redirect_uri=CALLBACK, scope="openid email",
        code_challenge_method="S256", token_endpoint_auth_method="none", timeout=60,
    ) as oauth:  # fmt: skip
        url, state = oauth.create_authorization_url(
            disc["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        callback = await browser_login(url, provider.email, provider.password)
        back = parse_qs(urlsplit(callback).query)
        assert back["state"] == [state]
        assert back["iss"] == [provider.issuer]  # RFC 9207, checked by the RP before the code
        token = await oauth.fetch_token(
            disc["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        jwks = JsonWebKey.import_key_set((await oauth.get(disc["jwks_uri"])).json())
        claims = _id_token(provider, token, jwks, nonce)
        assert claims["email"] == provider.email
        access = _pyjwt(provider, disc["jwks_uri"], token["access_token"], provider.audience)
        assert access["sub"] == claims["sub"]
        assert access["tenant_id"] == provider.tenant_id

        info = (await oauth.get(disc["userinfo_endpoint"])).json()
        assert (info["sub"], info["email"]) == (claims["sub"], provider.email)

        old = token["refresh_token"]
        renewed = await oauth.refresh_token(disc["token_endpoint"], refresh_token=old)
        assert renewed["refresh_token"] != old
        again = _id_token(provider, renewed, jwks, None)
        for claim in ("iss", "sub", "aud", "auth_time"):  # OIDC Core §12.2
            assert again[claim] == claims[claim], claim

    async with httpx.AsyncClient(timeout=60) as http:
        reuse = await http.post(
            disc["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": old,
                  "client_id": provider.client_id},
        )  # fmt: skip
        assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")
        chain = await http.post(
            disc["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"],
                  "client_id": provider.client_id},
        )  # fmt: skip
        assert chain.json()["error"] == "invalid_grant"


async def test_client_credentials_and_pyjwt(provider: Provider) -> None:
    disc = await _discovery(provider)
    async with AsyncOAuth2Client(
        client_id=provider.service_id, client_secret=provider.service_secret,
        token_endpoint_auth_method="client_secret_basic", timeout=60,
    ) as oauth:  # fmt: skip
        token = await oauth.fetch_token(disc["token_endpoint"], grant_type="client_credentials")
    assert "refresh_token" not in token
    claims = _pyjwt(provider, disc["jwks_uri"], token["access_token"], provider.audience)
    assert claims["service"] is True
    assert claims["azp"] == provider.service_id
    assert claims["tenant_id"] == provider.tenant_id


async def _sign_in(provider: Provider, disc: dict[str, Any]) -> dict[str, Any]:
    verifier = secrets.token_urlsafe(48)
    async with AsyncOAuth2Client(
        client_id=provider.client_id, redirect_uri=CALLBACK, scope="openid email",
        code_challenge_method="S256", token_endpoint_auth_method="none", timeout=60,
    ) as oauth:  # fmt: skip
        url, _ = oauth.create_authorization_url(
            disc["authorization_endpoint"], code_verifier=verifier
        )
        callback = await browser_login(url, provider.email, provider.password)
        token: dict[str, Any] = await oauth.fetch_token(
            disc["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
    return token


async def test_error_responses(provider: Provider) -> None:
    disc = await _discovery(provider)
    token_url, auth_url = disc["token_endpoint"], disc["authorization_endpoint"]
    async with httpx.AsyncClient(timeout=60) as http:
        # Token endpoint (RFC 6749 §5.2): JSON errors, no-store.
        unsupported = await http.post(
            token_url, data={"grant_type": "password", "client_id": provider.client_id}
        )
        assert unsupported.status_code == 400
        assert unsupported.json()["error"] in {"unsupported_grant_type", "unauthorized_client"}
        bad_code = await http.post(
            token_url,
            data={"grant_type": "authorization_code", "code": "nope", "redirect_uri": CALLBACK,
                  "client_id": provider.client_id, "code_verifier": secrets.token_urlsafe(48)},
        )  # fmt: skip
        assert (bad_code.status_code, bad_code.json()["error"]) == (400, "invalid_grant")
        assert "no-store" in bad_code.headers["cache-control"]
        wrong = await http.post(
            token_url, data={"grant_type": "client_credentials"},
            auth=(provider.service_id, "not-the-secret"),
        )  # fmt: skip
        assert wrong.status_code == 401
        if provider.mode == "builtin":
            assert wrong.json()["error"] == "invalid_client"
            assert wrong.headers["www-authenticate"].startswith("Basic ")
        else:  # Keycloak 26: unauthorized_client, no challenge (docs/oidc-conformance.md)
            assert wrong.json()["error"] == "unauthorized_client"

        # Userinfo (RFC 6750 §3): 401 with a Bearer challenge.
        info = await http.get(disc["userinfo_endpoint"], headers={"Authorization": "Bearer x"})
        assert info.status_code == 401
        assert info.headers["www-authenticate"].startswith("Bearer")

        # Authorization endpoint: an unknown client or redirect URI is never redirected to.
        unknown = await http.get(
            auth_url,
            params={"response_type": "code", "client_id": provider.client_id,
                    "redirect_uri": "http://evil.example/cb", "scope": "openid",
                    "code_challenge": "A" * 43, "code_challenge_method": "S256"},
        )  # fmt: skip
        assert unknown.status_code == 400
        assert "location" not in unknown.headers
        # A known one gets the error with state and iss (RFC 6749 §4.1.2.1, RFC 9207).
        no_pkce = await http.get(
            auth_url,
            params={"response_type": "code", "client_id": provider.client_id,
                    "redirect_uri": CALLBACK, "scope": "openid", "state": "s1"},
        )  # fmt: skip
        assert no_pkce.status_code == 302
        back = parse_qs(urlsplit(no_pkce.headers["location"]).query)
        assert back["error"] == ["invalid_request"]
        assert back["state"] == ["s1"]
        assert back["iss"] == [provider.issuer]

        # RP-initiated logout: another client's id_token_hint, or an unregistered URI, is not
        # followed.
        token = await _sign_in(provider, disc)
        logout = disc["end_session_endpoint"]
        for params in (
            {"id_token_hint": token["id_token"], "client_id": "plexica-cli",
             "post_logout_redirect_uri": SIGNED_OUT},
            {"id_token_hint": token["id_token"], "post_logout_redirect_uri": "http://evil.example/"},
        ):  # fmt: skip
            refused = await http.get(logout + "?" + urlencode(params))
            assert refused.status_code == 400, (params, refused.text[:300])
            assert "location" not in refused.headers
