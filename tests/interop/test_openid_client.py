"""openid-client 6 (Node, strict) and jose 6 as the relying party, against both identity modes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx

from tests.interop.conftest import CALLBACK, SIGNED_OUT, NodeRP, Provider, browser_login


async def _sign_in(provider: Provider, rp: NodeRP) -> dict[str, Any]:
    started = rp.ok("authorize", redirect_uri=CALLBACK)
    callback = await browser_login(started["url"], provider.email, provider.password)
    assert callback.startswith(CALLBACK)
    done = rp.ok(
        "callback", callback_url=callback, verifier=started["verifier"],
        state=started["state"], nonce=started["nonce"],
    )  # fmt: skip
    return {**done, "callback_url": callback, **started}


async def test_discovery_code_pkce_id_token_userinfo_and_jwks(
    provider: Provider, node_rp: NodeRP
) -> None:
    meta = node_rp.ok("metadata")
    assert meta["issuer"] == provider.issuer
    assert "S256" in meta["code_challenge_methods_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True

    signed_in = await _sign_in(provider, node_rp)  # openid-client checks iss, state, nonce, PKCE
    claims, tokens = signed_in["claims"], signed_in["tokens"]
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == provider.client_id
    assert claims["nonce"] == signed_in["nonce"]
    assert isinstance(claims["auth_time"], int)
    assert claims["email"] == provider.email

    # jose verifies both tokens against the published JWKS, independently of openid-client.
    access = node_rp.ok("verify", token=tokens["access_token"], audience=provider.audience)
    assert access["header"]["alg"] == "RS256"
    assert access["payload"]["sub"] == claims["sub"]
    assert access["payload"]["tenant_id"] == provider.tenant_id
    node_rp.ok("verify", token=tokens["id_token"], audience=provider.client_id)

    info = node_rp.ok("userinfo", access_token=tokens["access_token"], sub=claims["sub"])
    assert info["sub"] == claims["sub"]
    assert info["email"] == provider.email


async def test_refresh_rotates_keeps_auth_time_and_detects_reuse(
    provider: Provider, node_rp: NodeRP
) -> None:
    first = await _sign_in(provider, node_rp)
    renewed = node_rp.ok("refresh", refresh_token=first["tokens"]["refresh_token"])
    assert renewed["tokens"]["refresh_token"] != first["tokens"]["refresh_token"]
    # OIDC Core §12.2: same iss, sub and aud, and the auth_time of the original sign-in.
    for claim in ("iss", "sub", "aud", "auth_time"):
        assert renewed["claims"][claim] == first["claims"][claim], claim

    reused = node_rp.error("refresh", refresh_token=first["tokens"]["refresh_token"])
    assert (reused["status"], reused["error"]) == (400, "invalid_grant")
    # The reuse ended the chain: the token that replaced the reused one is refused too.
    chain = node_rp.error("refresh", refresh_token=renewed["tokens"]["refresh_token"])
    assert chain["error"] == "invalid_grant"


async def test_client_credentials_for_a_service_client(provider: Provider, node_rp: NodeRP) -> None:
    got = node_rp.ok("client_credentials", service=True)
    assert "refresh_token" not in got["tokens"]
    verified = node_rp.ok(
        "verify", service=True, token=got["tokens"]["access_token"], audience=provider.audience
    )
    assert verified["payload"]["service"] is True
    assert verified["payload"]["tenant_id"] == provider.tenant_id
    assert verified["payload"]["azp"] == provider.service_id


async def _logout(url: str) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        out = await http.get(url)
    assert out.status_code == 302, out.text[:300]
    back = urlsplit(out.headers["location"])
    assert back._replace(query="").geturl() == SIGNED_OUT
    assert parse_qs(back.query)["state"] == ["bye"]


def _without_client_id(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "client_id"]
    return parts._replace(query=urlencode(query)).geturl()


async def test_rp_initiated_logout_with_id_token_hint(provider: Provider, node_rp: NodeRP) -> None:
    signed_in = await _sign_in(provider, node_rp)
    url = node_rp.ok(
        "logout_url", id_token_hint=signed_in["tokens"]["id_token"],
        post_logout_redirect_uri=SIGNED_OUT, state="bye",
    )["url"]  # fmt: skip
    assert f"client_id={provider.client_id}" in url
    await _logout(url)
    # The session the ID token names has ended: its refresh token is refused.
    after = node_rp.error("refresh", refresh_token=signed_in["tokens"]["refresh_token"])
    assert after["error"] == "invalid_grant", after

    # The form many libraries build: id_token_hint alone names the client.
    again = await _sign_in(provider, node_rp)
    url = node_rp.ok(
        "logout_url", id_token_hint=again["tokens"]["id_token"],
        post_logout_redirect_uri=SIGNED_OUT, state="bye",
    )["url"]  # fmt: skip
    await _logout(_without_client_id(url))


async def test_error_responses_reach_the_rp_as_errors(provider: Provider, node_rp: NodeRP) -> None:
    # An authorization error comes back to the redirect URI with iss (RFC 9207), which strict
    # clients check before they look at the error.
    started = node_rp.ok("authorize", redirect_uri=CALLBACK)
    without_pkce = started["url"].replace("code_challenge_method=S256", "")
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.get(without_pkce)
    assert answer.status_code == 302, answer.text[:300]
    refused = node_rp.error(
        "callback", callback_url=answer.headers["location"], verifier=started["verifier"],
        state=started["state"], nonce=started["nonce"],
    )  # fmt: skip
    assert refused["code"] == "OAUTH_AUTHORIZATION_RESPONSE_ERROR", refused
    assert refused["error"] == "invalid_request"

    # A wrong client secret sent with HTTP Basic: 401 with a Basic challenge (RFC 6749 §5.2).
    wrong = node_rp.error("client_credentials", service=True, client_secret="not-the-secret")
    assert wrong["status"] == 401, wrong
    if provider.mode == "builtin":
        assert [c["scheme"] for c in wrong["challenges"]] == ["basic"], wrong
    else:  # Keycloak 26: unauthorized_client, no challenge (docs/oidc-conformance.md)
        assert wrong["error"] == "unauthorized_client", wrong

    # A code used twice is refused, and the tokens it bought are revoked (Security BCP §4.5).
    signed_in = await _sign_in(provider, node_rp)
    replay = node_rp.error(
        "callback", callback_url=signed_in["callback_url"], verifier=signed_in["verifier"],
        state=signed_in["state"], nonce=signed_in["nonce"],
    )  # fmt: skip
    assert replay["error"] == "invalid_grant", replay
    revoked = node_rp.error("refresh", refresh_token=signed_in["tokens"]["refresh_token"])
    assert revoked["error"] == "invalid_grant"
