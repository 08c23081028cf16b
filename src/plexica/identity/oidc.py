"""The built-in provider's OIDC endpoints on Keycloak's paths (``/realms/{realm}/...``).

Errors of the token and userinfo endpoints use the OAuth 2.0 shape (``{"error",
"error_description"}``) that OIDC clients expect, not the platform's error shape.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import id_token_hint, repository, service, sessions, tokens
from plexica.identity.schemas import TokenResponse
from plexica.identity.service import OAuthError
from plexica.identity.throttle import LoginThrottle
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica_sdk.errors import NotFoundError


def _builtin_only(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.keycloak_url is not None:
        # Keycloak is the provider: the registry's realms are not served from here.
        raise NotFoundError("no such route")


router = APIRouter(
    prefix="/realms", tags=["oidc"], include_in_schema=False, dependencies=[Depends(_builtin_only)]
)

RealmName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
CSRF_COOKIE = "plexica_csrf"
_OIDC = "/protocol/openid-connect"
_AUTH_PARAMS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method",
)  # fmt: skip
_CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# Only scopes whose claims are returned: `email` gives email and email_verified. Every token and
# userinfo carries the rest of _CLAIMS whatever the scope (Keycloak's defaults, ADR 0125).
_SCOPES = ("openid", "email")
_CLAIMS = (
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "sid", "email",
    "email_verified", "preferred_username", "realm_access", "tenant_id",
)  # fmt: skip
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _base(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return settings.public_base_url


TENANT_REALM_PREFIX = "plexica-"


def _oauth_error(exc: OAuthError, challenge: str | None = None) -> JSONResponse:
    """``challenge``: a 401's ``WWW-Authenticate``; by default the bearer-token one of a
    protected resource (RFC 6750 §3), the token endpoint passes its own."""
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = challenge or f'Bearer error="{exc.error}"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.message},
        status_code=exc.status,
        headers=headers,
    )


async def _realm(session: AsyncSession, realm: str) -> dict[str, Any] | None:
    found = await repository.get_realm(session, realm)
    return found if found is not None and found["enabled"] else None


@router.get("/{realm}/.well-known/openid-configuration")
async def discovery(realm: RealmName, request: Request) -> JSONResponse:
    async with _db(request).session() as session:
        if await _realm(session, realm) is None:
            return _oauth_error(OAuthError("not_found", "no such realm", status=404))
    iss = service.issuer_url(_base(request), realm)
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


@router.get("/{realm}" + _OIDC + "/certs")
async def certs(realm: RealmName, request: Request) -> JSONResponse:
    async with _db(request).session() as session:
        if await _realm(session, realm) is None:
            return _oauth_error(OAuthError("not_found", "no such realm", status=404))
        body = await service.jwks(session, realm)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})


# --- authorization endpoint and login page --------------------------------------------------


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Plexica</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;
color:#111;background:#fff;line-height:1.5}}
label{{display:block;margin-top:1rem;font-weight:600}}
input{{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #555;
border-radius:4px}}
input:focus,button:focus{{outline:3px solid #1a56db;outline-offset:2px}}
button{{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;background:#1a3fa6;color:#fff;
border:0;border-radius:4px;cursor:pointer}}
.error{{color:#8b0000;background:#fdecea;padding:.6rem;border-radius:4px}}
</style></head>
<body><main>{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


def _error_page(message: str, status: int = 400, title: str = "Sign-in error") -> HTMLResponse:
    alert = f'<p class="error" role="alert">{escape(message)}</p>'
    return _page(title, f"<h1>{escape(title)}</h1>{alert}", status)


def _login_form(
    realm: str,
    params: dict[str, str],
    csrf: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    secure: bool = False,
) -> HTMLResponse:
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in params.items()
    )
    alert = f'<p id="login-error" class="error" role="alert">{escape(error)}</p>' if error else ""
    described = ' aria-describedby="login-error" aria-invalid="true"' if error else ""
    body = f"""<h1>Sign in</h1>
<p>to <strong>{escape(realm)}</strong></p>
{alert}
<form method="post" action="" novalidate>
<input type="hidden" name="csrf" value="{escape(csrf)}">{hidden}
<label for="username">Email</label>
<input id="username" name="username" type="email" autocomplete="username" required
 value="{escape(email)}"{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required{described}>
<button type="submit">Sign in</button>
</form>"""
    response = _page("Sign in", body, status)
    response.set_cookie(
        CSRF_COOKIE, csrf, httponly=True, samesite="lax", path="/realms/" + realm,
        secure=secure, max_age=1800,
    )  # fmt: skip
    return response


def _tenant_callback(request: Request, realm: str) -> str | None:
    """The web shell's callback at the tenant's own host (``<slug>.<PLEXICA_WEB_BASE_DOMAIN>``,
    ADR 0092): allowed for every tenant realm without a registration per realm."""
    settings: Settings = request.app.state.settings
    if realm == service.OPERATOR_REALM or not realm.startswith(TENANT_REALM_PREFIX):
        return None
    url = settings.tenant_web_url(realm.removeprefix(TENANT_REALM_PREFIX))
    return f"{url}/auth/callback" if url else None


async def _check_authorize(
    session: AsyncSession,
    realm: str,
    params: dict[str, str],
    issuer: str,
    tenant_callback: str | None = None,
) -> tuple[dict[str, Any] | None, Response | None]:
    """The realm row, or the response that ends the request (an error page or redirect)."""
    found = await _realm(session, realm)
    if found is None:
        return None, _error_page("This sign-in page does not exist.", 404)
    client_id = params.get("client_id", "")
    client = await repository.get_client(session, realm, client_id) if client_id else None
    redirect_uri = params.get("redirect_uri", "")
    if (
        client is None
        or not client["enabled"]
        or not (
            service.redirect_allowed(client, redirect_uri)
            or (client_id == service.WEB_CLIENT and redirect_uri == tenant_callback)
        )
    ):
        # Never redirect to an address that is not registered for the client.
        return None, _error_page("The application that sent you here is not known.")
    error = None
    if params.get("response_type") != "code":
        error = ("unsupported_response_type", "only the authorization code flow is supported")
    elif not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        error = ("invalid_request", "PKCE with code_challenge_method=S256 is required")
    elif not 43 <= len(params["code_challenge"]) <= 128:
        error = ("invalid_request", "code_challenge is malformed")
    if error is not None:
        back = {"error": error[0], "error_description": error[1], "iss": issuer}  # RFC 9207
        if "state" in params:
            back["state"] = params["state"]
        return None, RedirectResponse(_with_query(redirect_uri, back), status_code=302)
    return found, None


def _auth_params(source: Any) -> dict[str, str]:
    return {k: str(source[k])[:2048] for k in _AUTH_PARAMS if source.get(k) is not None}


@router.get("/{realm}" + _OIDC + "/auth")
async def authorize(realm: RealmName, request: Request) -> Response:
    params = _auth_params(request.query_params)
    async with _db(request).session() as session:
        _, stop = await _check_authorize(
            session, realm, params, _issuer(request, realm), _tenant_callback(request, realm)
        )
    if stop is not None:
        return stop
    return _login_form(realm, params, secrets.token_urlsafe(24), secure=_https(request))


def _issuer(request: Request, realm: str) -> str:
    return service.issuer_url(_base(request), realm)


def _https(request: Request) -> bool:
    return _base(request).startswith("https://")


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/{realm}" + _OIDC + "/auth")
async def login(realm: RealmName, request: Request) -> Response:
    form = await request.form()
    params = _auth_params(form)
    email = str(form.get("username", "")).strip().lower()[:320]
    password = str(form.get("password", ""))[:1024]
    csrf_cookie = request.cookies.get(CSRF_COOKIE, "")
    csrf_field = str(form.get("csrf", ""))
    throttle: LoginThrottle = request.app.state.login_throttle
    async with _db(request).session() as session:
        found, stop = await _check_authorize(
            session, realm, params, _issuer(request, realm), _tenant_callback(request, realm)
        )
        if stop is not None:
            return stop
        assert found is not None
        if not csrf_cookie or not hmac.compare_digest(csrf_cookie, csrf_field):
            return _login_form(
                realm, params, secrets.token_urlsafe(24), email=email,
                error="Your sign-in form expired. Please try again.", status=400,
                secure=_https(request),
            )  # fmt: skip
        wait = await throttle.blocked(realm, email, _address(request))
        if wait > 0:
            response = _login_form(
                realm, params, csrf_cookie, email=email,
                error=f"Too many failed attempts. Try again in {int(wait) + 1} seconds.",
                status=429, secure=_https(request),
            )  # fmt: skip
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = await service.authenticate(session, realm, email, password)
        if user is None:
            await throttle.failed(realm, email, _address(request))
            details = {"address": _address(request), "client": params["client_id"]}
            await audit.record(
                session, email or "anonymous", "identity.login.failed", found["tenant_id"],
                f"realm:{realm}", after=details,
            )  # fmt: skip
            return _login_form(
                realm, params, csrf_cookie, email=email, error="Invalid email or password.",
                status=401, secure=_https(request),
            )  # fmt: skip
        await throttle.succeeded(realm, email)
        code = await tokens.create_code(
            session,
            realm,
            client_id=params["client_id"],
            user_id=user["id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            scope=params.get("scope", "openid"),
            nonce=params.get("nonce"),
        )
    back = {"code": code, "iss": _issuer(request, realm)}
    if "state" in params:
        back["state"] = params["state"]
    done = RedirectResponse(_with_query(params["redirect_uri"], back), status_code=303)
    done.delete_cookie(CSRF_COOKIE, path="/realms/" + realm)
    return done


# --- token endpoint -------------------------------------------------------------------------


def _client_credentials(request: Request, form: Any) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "client authentication failed", 401) from None
        client_id, _, secret = decoded.partition(":")
        # Form-encoded before base64 (RFC 6749 §2.3.1): a space may arrive as "+".
        return unquote_plus(client_id), unquote_plus(secret)
    client_id = form.get("client_id")
    secret = form.get("client_secret")
    return (str(client_id) if client_id else None), (str(secret) if secret else None)


@router.post("/{realm}" + _OIDC + "/token")
async def token(realm: RealmName, request: Request) -> Response:
    form = await request.form()
    grant_type = str(form.get("grant_type", ""))
    base = _base(request)
    # The scheme of client authentication at this endpoint, HTTP Basic (RFC 6749 §5.2): the
    # one a client that sent Basic credentials used, and the one a client without them can use.
    challenge = f'Basic realm="{realm}"'
    try:
        client_id, secret = _client_credentials(request, form)
    except OAuthError as exc:
        return _oauth_error(exc, challenge)
    # A refused grant still commits: the code stays spent and a replayed refresh token's chain
    # stays revoked.
    async with _db(request).session() as session:
        try:
            result = await _grant(
                session, realm, grant_type, form, client_id=client_id, secret=secret, base=base
            )
        except OAuthError as exc:
            return _oauth_error(exc, challenge)
    return JSONResponse(result.model_dump(exclude_none=True), headers=_NO_STORE)


async def _grant(
    session: AsyncSession,
    realm: str,
    grant_type: str,
    form: Any,
    *,
    client_id: str | None,
    secret: str | None,
    base: str,
) -> TokenResponse:
    found = await _realm(session, realm)
    if found is None:
        raise OAuthError("invalid_request", "no such realm", 404)
    client = await service.authenticate_client(session, realm, client_id, secret)
    if grant_type == "authorization_code":
        return await tokens.exchange_code(
            session, found, client, code=str(form.get("code", "")),
            redirect_uri=_opt(form.get("redirect_uri")),
            verifier=_opt(form.get("code_verifier")), base_url=base,
        )  # fmt: skip
    if grant_type == "refresh_token":
        token = str(form.get("refresh_token", ""))
        return await tokens.refresh(session, found, client, token, base)
    if grant_type == "client_credentials":
        scope = str(form.get("scope", "")).strip()
        return await tokens.client_credentials(session, found, client, scope, base)
    raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


def _opt(value: Any) -> str | None:
    return str(value) if value is not None else None


# --- userinfo and logout --------------------------------------------------------------------


async def _userinfo(realm: str, request: Request) -> Response:
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not raw:
            raise OAuthError("invalid_token", "a bearer token is required", 401)  # noqa: TRY301
        async with _db(request).session() as session:
            if await _realm(session, realm) is None:
                raise OAuthError("invalid_token", "the access token is invalid", 401)  # noqa: TRY301
            claims = await tokens.local_claims(session, realm, raw.strip(), _base(request))
    except OAuthError as exc:
        return _oauth_error(exc)
    info: dict[str, Any] = {
        k: claims[k]
        for k in ("sub", "email", "preferred_username", "realm_access", "tenant_id")
        if k in claims
    }
    if "email" in info:
        info["email_verified"] = True
    return JSONResponse(info, headers=_NO_STORE)


@router.get("/{realm}" + _OIDC + "/userinfo")
async def userinfo_get(realm: RealmName, request: Request) -> Response:
    return await _userinfo(realm, request)


@router.post("/{realm}" + _OIDC + "/userinfo")
async def userinfo_post(realm: RealmName, request: Request) -> Response:
    return await _userinfo(realm, request)


async def _logout_client(
    session: AsyncSession, realm: str, request: Request, source: Any
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """The client an RP-initiated logout names (``client_id``, else the ``id_token_hint``'s
    audience) and the hint's claims, or why the request is refused (OIDC RP-Initiated Logout
    1.0 §2, §3)."""
    client_id = str(source["client_id"]) if source.get("client_id") else None
    hint = source.get("id_token_hint")
    claims = None
    redirect = source.get("post_logout_redirect_uri")
    if hint:
        claims = await id_token_hint.claims(session, realm, str(hint), _base(request))
        if claims is None:
            return None, None, "The sign-out request carries an ID token this realm did not issue."
        audience = id_token_hint.audiences(claims)
        if client_id is not None and client_id not in audience:
            return None, None, "The application that sent you here is not the one you signed in to."
        if client_id is None:
            client_id = str(claims.get("azp") or audience[0]) if audience else None
    client = await repository.get_client(session, realm, client_id) if client_id else None
    if redirect and (
        client is None
        or not client["enabled"]
        or not service.redirect_allowed(client, str(redirect))
    ):
        # Never redirect to an address that is not registered for the client.
        return None, None, "The application that sent you here is not known."
    return client, claims, None


async def _logout(realm: str, request: Request, source: Any) -> Response:
    refresh_token = source.get("refresh_token")
    redirect = source.get("post_logout_redirect_uri")
    async with _db(request).session() as session:
        if await _realm(session, realm) is None:
            return _error_page("This page does not exist.", 404)
        client, hint, refused = await _logout_client(session, realm, request, source)
        if refused is not None:
            return _error_page(refused, title="Sign-out error")  # a refused request ends nothing
        sid = hint.get("sid") if hint else None
        ended = await sessions.logout(session, realm, _opt(refresh_token), _opt(sid))
    revocations = getattr(request.app.state, "revocations", None)
    if ended and revocations is not None:
        revocations.note(*ended)  # committed: this process refuses at once, others on NOTIFY
    if redirect and client is not None:
        back = {"state": str(source["state"])} if source.get("state") else {}
        return RedirectResponse(_with_query(str(redirect), back), status_code=302)
    if request.method == "POST" and refresh_token and not redirect:
        return Response(status_code=204, headers=_NO_STORE)
    return _page("Signed out", "<h1>You are signed out</h1>")


@router.get("/{realm}" + _OIDC + "/logout")
async def logout_get(realm: RealmName, request: Request) -> Response:
    return await _logout(realm, request, request.query_params)


@router.post("/{realm}" + _OIDC + "/logout")
async def logout_post(realm: RealmName, request: Request) -> Response:
    return await _logout(realm, request, await request.form())
