"""The built-in provider against the MUSTs strict relying parties check (issue 26); the suite
with the RP libraries themselves is tests/interop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from sqlalchemy import text

from plexica.identity.builtin import BuiltinIdentity
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from tests.identity.conftest import Live, bearer, form_fields, provision, set_password

CALLBACK = "http://app.example/callback"
BYE = "http://app.example/signed-out"
OTHER_BYE = "http://other.example/signed-out"


@dataclass
class Realm:
    tenant: TenantRef
    issuer: str
    password: str

    @property
    def endpoint(self) -> str:
        return self.issuer + "/protocol/openid-connect"


async def _realm(db: Database, live: Live) -> Realm:
    tenant = await provision(db, live)
    adapter = BuiltinIdentity(db, live.url)
    await adapter.create_client(tenant.realm, "app", public=True, redirect_uris=(CALLBACK, BYE))
    await adapter.create_client(tenant.realm, "other", public=True, redirect_uris=(OTHER_BYE,))
    password = await set_password(db, tenant.realm, tenant.admin_email)
    return Realm(tenant, live.issuer(tenant.realm), password)


async def _code(http: httpx.AsyncClient, realm: Realm) -> tuple[str, str]:
    """Sign in through the login form; the code and its PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code", "client_id": "app", "redirect_uri": CALLBACK,
        "scope": "openid email", "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256", "nonce": "n-1",
    }  # fmt: skip
    page = await http.get(realm.endpoint + "/auth", params=params)
    fields = {**form_fields(page.text), "username": realm.tenant.admin_email}
    answer = await http.post(realm.endpoint + "/auth", data={**fields, "password": realm.password})
    assert answer.status_code == 303, answer.text
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0], verifier


async def _exchange(http: httpx.AsyncClient, realm: Realm, code: str, verifier: str) -> Any:
    return await http.post(
        realm.endpoint + "/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": "app",
              "redirect_uri": CALLBACK, "code_verifier": verifier},
    )  # fmt: skip


async def _refresh(http: httpx.AsyncClient, realm: Realm, token: str) -> httpx.Response:
    return await http.post(
        realm.endpoint + "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "app"},
    )


async def _tokens(http: httpx.AsyncClient, realm: Realm) -> dict[str, Any]:
    answer = await _exchange(http, realm, *(await _code(http, realm)))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_a_refreshed_id_token_keeps_the_auth_time_of_the_sign_in(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    first = await _tokens(http, realm)
    signed_in = _claims(first["id_token"])["auth_time"]
    # The sign-in is made an hour old: a refresh now must still say when it happened.
    async with db.session() as session:
        await session.execute(
            text(
                "UPDATE platform.refresh_tokens SET auth_time = auth_time - interval '1 hour'"
                " WHERE realm = :realm"
            ),
            {"realm": realm.tenant.realm},
        )
    renewed = (await _refresh(http, realm, first["refresh_token"])).json()
    claims = _claims(renewed["id_token"])
    assert claims["auth_time"] == signed_in - 3600
    assert claims["iat"] >= signed_in
    # ... and so does every later refresh of the chain.
    again = (await _refresh(http, realm, renewed["refresh_token"])).json()
    assert _claims(again["id_token"])["auth_time"] == signed_in - 3600


async def test_a_token_endpoint_401_answers_the_basic_scheme_the_client_used(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    made = await BuiltinIdentity(db, live.url).create_client(
        realm.tenant.realm, "svc", public=False
    )
    assert made.secret is not None
    wrong = await http.post(
        realm.endpoint + "/token", data={"grant_type": "client_credentials"},
        auth=("svc", "not-the-secret"),
    )  # fmt: skip
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"] == f'Basic realm="{realm.tenant.realm}"'
    garbled = await http.post(
        realm.endpoint + "/token", data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic %%%"},
    )  # fmt: skip
    assert garbled.status_code == 401
    assert garbled.headers["www-authenticate"].startswith("Basic ")
    # The secret is form-encoded before Basic (RFC 6749 §2.3.1): a quoted one still works.
    raw = base64.b64encode(f"svc:{made.secret}".replace("-", "%2D").encode()).decode()
    quoted = await http.post(
        realm.endpoint + "/token", data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {raw}"},
    )  # fmt: skip
    assert quoted.status_code == 200, quoted.text


async def test_logout_with_only_an_id_token_hint_redirects_to_its_clients_uri(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    tokens = await _tokens(http, realm)
    out = await http.get(
        realm.endpoint + "/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": BYE,
                "state": "s-1"},
    )  # fmt: skip
    assert out.status_code == 302
    assert out.headers["location"] == BYE + "?state=s-1"
    # A hint this realm did not sign names no client.
    forged = jwt.encode(_claims(tokens["id_token"]), "k" * 32, algorithm="HS256")
    refused = await http.get(
        realm.endpoint + "/logout",
        params={"id_token_hint": forged, "post_logout_redirect_uri": BYE},
    )
    assert refused.status_code == 400
    assert "location" not in refused.headers
    # Without any client, the page, not a redirect.
    page = await http.get(realm.endpoint + "/logout", params={"post_logout_redirect_uri": BYE})
    assert page.status_code == 400
    assert "location" not in page.headers


async def test_logout_refuses_a_client_id_that_is_not_the_id_tokens_audience(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    tokens = await _tokens(http, realm)
    params = {"id_token_hint": tokens["id_token"], "client_id": "other",
              "post_logout_redirect_uri": OTHER_BYE}  # fmt: skip
    hijack = await http.get(realm.endpoint + "/logout?" + urlencode(params))
    assert hijack.status_code == 400
    assert "location" not in hijack.headers
    # Another client's URI is refused for the hint's own client too.
    other_uri = await http.get(
        realm.endpoint + "/logout",
        params={"id_token_hint": tokens["id_token"], "client_id": "app",
                "post_logout_redirect_uri": OTHER_BYE},
    )  # fmt: skip
    assert other_uri.status_code == 400
    assert "location" not in other_uri.headers
    # The refused requests ended nothing; a matching one redirects.
    assert (await _refresh(http, realm, tokens["refresh_token"])).status_code == 200
    ok = await http.get(
        realm.endpoint + "/logout",
        params={"id_token_hint": tokens["id_token"], "client_id": "app",
                "post_logout_redirect_uri": BYE},
    )  # fmt: skip
    assert (ok.status_code, ok.headers["location"]) == (302, BYE)


async def test_authorization_error_redirects_carry_iss(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    for params in (
        {"response_type": "token", "code_challenge": "A" * 43, "code_challenge_method": "S256"},
        {"response_type": "code", "code_challenge": "short", "code_challenge_method": "S256"},
        {"response_type": "code"},
    ):
        answer = await http.get(
            realm.endpoint + "/auth",
            params={**params, "client_id": "app", "redirect_uri": CALLBACK, "state": "st"},
        )
        assert answer.status_code == 302
        back = parse_qs(urlsplit(answer.headers["location"]).query)
        assert back["iss"] == [realm.issuer], params
        assert back["state"] == ["st"]
        assert back["error"][0] in {"unsupported_response_type", "invalid_request"}


async def test_a_replayed_code_revokes_the_tokens_it_bought(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    code, verifier = await _code(http, realm)
    first = await _exchange(http, realm, code, verifier)
    assert first.status_code == 200
    replay = await _exchange(http, realm, code, verifier)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    refused = await _refresh(http, realm, first.json()["refresh_token"])
    assert refused.json()["error"] == "invalid_grant"
    # ... and its access token too, through the revocation store (its session, `sid`).
    access = bearer(first.json()["access_token"])
    deadline = time.monotonic() + 30
    while (me := await http.get(live.url + "/v1/me", headers=access)).status_code != 401:
        assert me.status_code == 200, me.text
        assert time.monotonic() < deadline, "the replayed code's access token still works"
        await asyncio.sleep(0.05)
    # Another sign-in's session is untouched.
    other = await _tokens(http, realm)
    assert (await http.get(live.url + "/v1/me", headers=bearer(other["access_token"]))).is_success
    assert (await _refresh(http, realm, other["refresh_token"])).status_code == 200


async def test_discovery_states_exactly_what_is_supported(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    realm = await _realm(db, live)
    disc = (await http.get(realm.issuer + "/.well-known/openid-configuration")).json()
    # Discovery's defaults would otherwise say request_uri is supported.
    assert disc["request_uri_parameter_supported"] is False
    assert disc["request_parameter_supported"] is False
    assert disc["claims_parameter_supported"] is False
    assert disc["authorization_response_iss_parameter_supported"] is True
    assert set(disc["scopes_supported"]) == {"openid", "email"}
    assert disc["response_types_supported"] == ["code"]
    assert disc["code_challenge_methods_supported"] == ["S256"]

    tokens = await _tokens(http, realm)
    info = await http.get(
        disc["userinfo_endpoint"], headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    returned = set(_claims(tokens["id_token"])) | set(info.json())
    access = set(_claims(tokens["access_token"])) - {"jti", "typ", "scope"}  # not user claims
    assert returned | access == set(disc["claims_supported"])
    assert {"email", "email_verified"} <= returned  # what the `email` scope promises
