"""The built-in provider's OIDC endpoints on Keycloak's paths (``/realms/{realm}/...``).

Errors of the token and userinfo endpoints use the OAuth 2.0 shape (``{"error",
"error_description"}``) that OIDC clients expect, not the platform's error shape.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import mfa, service, sessions, sso, tokens
from plexica.identity.jwks import RealmIssuers
from plexica.identity.oidc_company import company_redirect
from plexica.identity.oidc_pages import (
    CSRF_COOKIE,
    NO_STORE,
    Step,
    code_form,
    enrol_form,
    error_page,
    login_form,
    page,
    recovery_page,
)
from plexica.identity.oidc_requests import (
    RealmName,
    address_of,
    auth_params,
    base_url,
    check_authorize,
    client_credentials,
    enabled_realm,
    issue_code,
    logout_client,
    realms_router,
    with_query,
)
from plexica.identity.schemas import TokenResponse
from plexica.identity.service import OAuthError
from plexica.identity.throttle import LoginThrottle
from plexica.kit.db import request_db
from plexica.kit.state import core_state, started
from plexica_sdk.auth import bearer_of

router = realms_router()
_OIDC = "/protocol/openid-connect"
_CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# Only scopes whose claims are returned: `email` gives email and email_verified. Every token and
# userinfo carries the rest of _CLAIMS whatever the scope (Keycloak's defaults, ADR 0125).
_SCOPES = ("openid", "email")
_CLAIMS = (
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "sid", "email",
    "email_verified", "preferred_username", "realm_access", "tenant_id",
)  # fmt: skip


def _oauth_error(exc: OAuthError, challenge: str | None = None) -> JSONResponse:
    """``challenge``: a 401's ``WWW-Authenticate``; by default the bearer-token one of a
    protected resource (RFC 6750 §3), the token endpoint passes its own."""
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = challenge or f'Bearer error="{exc.error}"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.message},
        status_code=exc.status,
        headers=headers,
    )


@router.get("/{realm}/.well-known/openid-configuration")
async def discovery(realm: RealmName, request: Request) -> JSONResponse:
    async with request_db(request).session() as session:
        if await enabled_realm(session, realm) is None:
            return _oauth_error(OAuthError("not_found", "no such realm", status=404))
    iss = service.issuer_url(base_url(request), realm)
    return JSONResponse(
        {
            "issuer": iss,
            "authorization_endpoint": iss + _OIDC + "/auth",
            "token_endpoint": iss + _OIDC + "/token",
            "userinfo_endpoint": iss + _OIDC + "/userinfo",
            "jwks_uri": iss + _OIDC + "/certs",
            "end_session_endpoint": iss + _OIDC + "/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": _CLIENT_AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(_SCOPES),
            "claims_supported": list(_CLAIMS),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            # Discovery's default for this one is true: say it.
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


# Outside ``router``: with Keycloak the core passes its realms' keys on to plugins (ADR 0252).
keys_router = realms_router(only_builtin=False)


@keys_router.get("/{realm}" + _OIDC + "/certs")
async def certs(realm: RealmName, request: Request) -> JSONResponse:
    not_found = _oauth_error(OAuthError("not_found", "no such realm", status=404))
    settings = core_state(request).settings
    if settings.keycloak_url is not None:
        resolver = getattr(core_state(request).verifier, "resolver", None)
        published = await resolver.published(realm) if isinstance(resolver, RealmIssuers) else None
        if published is None:
            return not_found
        if not published:  # Keycloak did not answer yet: no empty key set for plugins to cache
            unavailable = OAuthError("temporarily_unavailable", "keys not fetched yet", status=503)
            return _oauth_error(unavailable)
        return JSONResponse({"keys": published}, headers={"Cache-Control": "public, max-age=60"})
    async with request_db(request).session() as session:
        if await enabled_realm(session, realm) is None:
            return not_found
        body = await service.jwks(session, realm)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})


# --- authorization endpoint -----------------------------------------------------------------


@router.get("/{realm}" + _OIDC + "/auth")
async def authorize(realm: RealmName, request: Request) -> Response:
    params = auth_params(request.query_params)
    async with request_db(request).session() as session:
        _, stop = await check_authorize(session, request, realm, params)
        company = await sso.display_name(session, realm) if stop is None else None
    if stop is not None:
        return stop
    return login_form(
        realm, params, secrets.token_urlsafe(24), secure=_https(request), company=company
    )


def _https(request: Request) -> bool:
    return base_url(request).startswith("https://")


@router.post("/{realm}" + _OIDC + "/auth")
async def login(realm: RealmName, request: Request) -> Response:
    form = await request.form()
    params = auth_params(form)
    csrf_cookie = request.cookies.get(CSRF_COOKIE, "")
    csrf_field = str(form.get("csrf", ""))
    challenge = str(form.get("challenge", ""))[:100]
    async with request_db(request).session() as session:
        found, stop = await check_authorize(session, request, realm, params)
        if stop is not None:
            return stop
        assert found is not None
        if not csrf_cookie or not hmac.compare_digest(csrf_cookie, csrf_field):
            return login_form(
                realm, params, secrets.token_urlsafe(24),
                email=str(form.get("username", "")).strip().lower()[:320],
                error="Your sign-in form expired. Please try again.", status=400,
                secure=_https(request),
            )  # fmt: skip
        step = _SignIn(request, session, realm, params, found["tenant_id"], csrf_cookie)
        if challenge:
            user = await step.second(challenge, str(form.get("code", ""))[:64])
        else:
            email = str(form.get("username", "")).strip().lower()[:320]
            password = str(form.get("password", ""))[:1024]
            company = await step.company(email, password, wanted=form.get("sso") == "1")
            user = company or await step.first(email, password)
        if isinstance(user, Response):
            return user
        return await issue_code(
            session, request, realm, params, user, tenant_id=found["tenant_id"],
            how={"two_step": bool(challenge)},
        )  # fmt: skip


Again = Callable[[str, int], Awaitable[Response]]  # the page again, with an error and a status


@dataclass
class _SignIn:
    """The two steps of a sign-in form: the password, then (with TOTP, ADR 0232) a code. Each
    gives the user to issue a code for, or the page to answer with."""

    request: Request
    session: AsyncSession
    realm: str
    params: dict[str, str]
    tenant_id: Any
    csrf: str

    @property
    def throttle(self) -> LoginThrottle:
        return started(core_state(self.request).login_throttle, "login_throttle")

    async def _blocked(self, email: str, again: Again) -> Response | None:
        wait = await self.throttle.blocked(self.realm, email, address_of(self.request))
        if wait <= 0:
            return None
        seconds = str(int(wait) + 1)
        response = await again(f"Too many failed attempts. Try again in {seconds} seconds.", 429)
        response.headers["Retry-After"] = seconds
        return response

    async def _failed(self, email: str, action: str) -> None:
        await self.throttle.failed(self.realm, email, address_of(self.request))
        details = {"address": address_of(self.request), "client": self.params["client_id"]}
        await audit.record(
            self.session, email or "anonymous", action, self.tenant_id, f"realm:{self.realm}",
            after=details,
        )  # fmt: skip

    def _password_form(self, email: str) -> Again:
        async def again(error: str, status: int) -> Response:
            return login_form(
                self.realm, self.params, self.csrf, email=email, error=error, status=status,
                secure=_https(self.request),
                company=await sso.display_name(self.session, self.realm),
            )  # fmt: skip

        return again

    async def company(self, email: str, password: str, *, wanted: bool) -> Response | None:
        return await company_redirect(
            self.session, self.request, self.realm, self.params, self.tenant_id,
            email=email, password=password, wanted=wanted, again=self._password_form(email),
        )  # fmt: skip

    async def first(self, email: str, password: str) -> dict[str, Any] | Response:
        again = self._password_form(email)
        if (blocked := await self._blocked(email, again)) is not None:
            return blocked
        user = await service.authenticate(self.session, self.realm, email, password)
        if user is None:
            await self._failed(email, "identity.login.failed")
            return await again("Invalid email or password.", 401)
        await self.throttle.succeeded(self.realm, email)
        if (await mfa.status(self.session, user["id"])).enabled:
            token = await mfa.open_challenge(self.session, self.realm, user["id"], "verify")
            return code_form(self._step(token))
        if await mfa.required(self.session, self.realm):
            token = await mfa.open_challenge(self.session, self.realm, user["id"], "enrol")
            started = await mfa.begin(self.session, user["id"], email, self._issuer)
            return enrol_form(self._step(token), started.secret, started.uri)
        return user

    @property
    def _issuer(self) -> str:
        return mfa.issuer_label(self.realm)

    def _step(self, challenge: str) -> Step:
        return Step(self.realm, self.params, self.csrf, challenge)

    async def second(self, challenge: str, code: str) -> dict[str, Any] | Response:
        answer = await mfa.answer(self.session, self.realm, challenge, code, time.time())
        user = (
            await service.enabled_user(self.session, self.realm, answer.user_id)
            if answer.user_id is not None
            else None
        )
        if user is None:
            expired = self._password_form("")
            return await expired("Your sign-in expired. Please sign in again.", 400)
        email = str(user["email"])
        step = self._step(challenge)

        async def again(error: str, status: int) -> Response:
            if answer.kind == "enrol":
                shown = await mfa.pending(self.session, user["id"], email, self._issuer)
                return enrol_form(step, shown.secret, shown.uri, error=error, status=status)
            return code_form(step, error=error, status=status)

        if (blocked := await self._blocked(email, again)) is not None:
            return blocked
        if answer.used is None:
            await self._failed(email, "identity.login.mfa_failed")
            return await again("That code is not valid. Try the current one.", 401)
        await self.throttle.succeeded(self.realm, email)
        target = f"user:{user['id']}"
        if answer.used == "confirmed":
            await audit.record(
                self.session, email, "identity.mfa.enabled", self.tenant_id, target,
                after={"at_sign_in": True},
            )  # fmt: skip
            return recovery_page(step, answer.recovery_codes)
        if answer.used == "recovery":
            await audit.record(
                self.session, email, "identity.login.recovery_code_used", self.tenant_id, target
            )
        return user


# --- token endpoint -------------------------------------------------------------------------


@router.post("/{realm}" + _OIDC + "/token")
async def token(realm: RealmName, request: Request) -> Response:
    form = await request.form()
    grant_type = str(form.get("grant_type", ""))
    base = base_url(request)
    # The scheme of client authentication at this endpoint, HTTP Basic (RFC 6749 §5.2): the
    # one a client that sent Basic credentials used, and the one a client without them can use.
    challenge = f'Basic realm="{realm}"'
    try:
        client_id, secret = client_credentials(request, form)
    except OAuthError as exc:
        return _oauth_error(exc, challenge)
    # A refused grant still commits: the code stays spent and a replayed refresh token's chain
    # stays revoked.
    async with request_db(request).session() as session:
        try:
            result = await _grant(
                session, realm, grant_type, form, client_id=client_id, secret=secret, base=base,
                now=(core_state(request).clock or service.now_utc)(),
            )  # fmt: skip
        except OAuthError as exc:
            return _oauth_error(exc, challenge)
    return JSONResponse(result.model_dump(exclude_none=True), headers=NO_STORE)


async def _grant(
    session: AsyncSession,
    realm: str,
    grant_type: str,
    form: Any,
    *,
    client_id: str | None,
    secret: str | None,
    base: str,
    now: datetime,
) -> TokenResponse:
    found = await enabled_realm(session, realm)
    if found is None:
        raise OAuthError("invalid_request", "no such realm", 404)
    client = await service.authenticate_client(session, realm, client_id, secret)
    if grant_type == "authorization_code":
        return await tokens.exchange_code(
            session, found, client, code=str(form.get("code", "")),
            redirect_uri=_opt(form.get("redirect_uri")),
            verifier=_opt(form.get("code_verifier")), base_url=base, now=now,
        )  # fmt: skip
    if grant_type == "refresh_token":
        token = str(form.get("refresh_token", ""))
        return await tokens.refresh(session, found, client, token, base, now=now)
    if grant_type == "client_credentials":
        scope = str(form.get("scope", "")).strip()
        return await tokens.client_credentials(session, found, client, scope, base)
    raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


def _opt(value: Any) -> str | None:
    return str(value) if value is not None else None


# --- userinfo and logout --------------------------------------------------------------------


async def _userinfo(realm: str, request: Request) -> Response:
    raw = bearer_of(request.headers.get("authorization"))
    try:
        if raw is None:
            raise OAuthError("invalid_token", "a bearer token is required", 401)  # noqa: TRY301
        async with request_db(request).session() as session:
            if await enabled_realm(session, realm) is None:
                raise OAuthError("invalid_token", "the access token is invalid", 401)  # noqa: TRY301
            claims = await tokens.local_claims(session, realm, raw.strip(), base_url(request))
    except OAuthError as exc:
        return _oauth_error(exc)
    info: dict[str, Any] = {
        k: claims[k]
        for k in ("sub", "email", "preferred_username", "realm_access", "tenant_id")
        if k in claims
    }
    if "email" in info:
        info["email_verified"] = True
    return JSONResponse(info, headers=NO_STORE)


@router.get("/{realm}" + _OIDC + "/userinfo")
async def userinfo_get(realm: RealmName, request: Request) -> Response:
    return await _userinfo(realm, request)


@router.post("/{realm}" + _OIDC + "/userinfo")
async def userinfo_post(realm: RealmName, request: Request) -> Response:
    return await _userinfo(realm, request)


async def _logout(realm: str, request: Request, source: Any) -> Response:
    refresh_token = source.get("refresh_token")
    redirect = source.get("post_logout_redirect_uri")
    async with request_db(request).session() as session:
        if await enabled_realm(session, realm) is None:
            return error_page("This page does not exist.", 404)
        client, hint, refused = await logout_client(session, realm, request, source)
        if refused is not None:
            return error_page(refused, title="Sign-out error")  # a refused request ends nothing
        sid = hint.get("sid") if hint else None
        ended = await sessions.logout(session, realm, _opt(refresh_token), _opt(sid))
    revocations = core_state(request).revocations
    if ended and revocations is not None:
        revocations.note(*ended)  # committed: this process refuses at once, others on NOTIFY
    if redirect and client is not None:
        back = {"state": str(source["state"])} if source.get("state") else {}
        return RedirectResponse(with_query(str(redirect), back), status_code=302)
    if request.method == "POST" and refresh_token and not redirect:
        return Response(status_code=204, headers=NO_STORE)
    return page("Signed out", "<h1>You are signed out</h1>")


@router.get("/{realm}" + _OIDC + "/logout")
async def logout_get(realm: RealmName, request: Request) -> Response:
    return await _logout(realm, request, request.query_params)


@router.post("/{realm}" + _OIDC + "/logout")
async def logout_post(realm: RealmName, request: Request) -> Response:
    return await _logout(realm, request, await request.form())
