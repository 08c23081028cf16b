"""What the built-in provider's endpoints accept, checked against the realm registry: an
authorization request's realm, client, redirect URI and PKCE; a token request's client
credentials; an RP-initiated logout's client and ID token hint. A refused request is never
redirected to an address that is not registered for the client. And the end of a sign-in:
the code issued."""

from __future__ import annotations

import base64
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import id_token_hint, repository, service, tokens
from plexica.identity.names import realm_slug
from plexica.identity.oidc_pages import CSRF_COOKIE, error_page
from plexica.identity.service import OAuthError
from plexica.kit.state import core_state
from plexica_sdk.errors import NotFoundError

AUTH_PARAMS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method",
)  # fmt: skip


def builtin_only(request: Request) -> None:
    settings = core_state(request).settings
    if settings.keycloak_url is not None:
        # Keycloak is the provider: the registry's realms are not served from here.
        raise NotFoundError("no such route")


RealmName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


def realms_router(*, only_builtin: bool = True) -> APIRouter:
    """A router of ``/realms/...`` endpoints, out of the API's schema; ``only_builtin``: served
    by the built-in provider alone (with Keycloak, a 404)."""
    dependencies = [Depends(builtin_only)] if only_builtin else []
    return APIRouter(
        prefix="/realms", tags=["oidc"], include_in_schema=False, dependencies=dependencies
    )


def base_url(request: Request) -> str:
    settings = core_state(request).settings
    return settings.public_base_url


async def enabled_realm(session: AsyncSession, realm: str) -> dict[str, Any] | None:
    found = await repository.get_realm(session, realm)
    return found if found is not None and found["enabled"] else None


def with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def tenant_callback(request: Request, realm: str) -> str | None:
    """The web shell's callback at the tenant's own host (``<slug>.<PLEXICA_WEB_BASE_DOMAIN>``,
    ADR 0092): allowed for every tenant realm without a registration per realm."""
    slug = realm_slug(realm)
    if slug is None:
        return None
    url = core_state(request).settings.tenant_web_url(slug)
    return f"{url}/auth/callback" if url else None


async def check_authorize(
    session: AsyncSession, request: Request, realm: str, params: dict[str, str]
) -> tuple[dict[str, Any] | None, Response | None]:
    """The realm row, or the response that ends the request (an error page or redirect)."""
    found = await enabled_realm(session, realm)
    if found is None:
        return None, error_page("This sign-in page does not exist.", 404)
    client_id = params.get("client_id", "")
    client = await repository.get_client(session, realm, client_id) if client_id else None
    redirect_uri = params.get("redirect_uri", "")
    if (
        client is None
        or not client["enabled"]
        or not (
            service.redirect_allowed(client, redirect_uri)
            or (client_id == service.WEB_CLIENT and redirect_uri == tenant_callback(request, realm))
        )
    ):
        # Never redirect to an address that is not registered for the client.
        return None, error_page("The application that sent you here is not known.")
    error = None
    if params.get("response_type") != "code":
        error = ("unsupported_response_type", "only the authorization code flow is supported")
    elif not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        error = ("invalid_request", "PKCE with code_challenge_method=S256 is required")
    elif not 43 <= len(params["code_challenge"]) <= 128:
        error = ("invalid_request", "code_challenge is malformed")
    if error is not None:
        issuer = service.issuer_url(base_url(request), realm)
        back = {"error": error[0], "error_description": error[1], "iss": issuer}  # RFC 9207
        if "state" in params:
            back["state"] = params["state"]
        return None, RedirectResponse(with_query(redirect_uri, back), status_code=302)
    return found, None


def auth_params(source: Any) -> dict[str, str]:
    return {k: str(source[k])[:2048] for k in AUTH_PARAMS if source.get(k) is not None}


def client_credentials(request: Request, form: Any) -> tuple[str | None, str | None]:
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


async def logout_client(
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
        claims = await id_token_hint.claims(session, realm, str(hint), base_url(request))
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


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def issue_code(
    session: AsyncSession,
    request: Request,
    realm: str,
    params: dict[str, str],
    user: dict[str, Any],
    *,
    tenant_id: Any,
    how: dict[str, Any],
) -> Response:
    """The end of a sign-in: audited, and the browser sent back to the client with a code."""
    await audit.record(
        session, str(user["email"]), "identity.login.succeeded", tenant_id, f"user:{user['id']}",
        after={"address": address_of(request), "client": params["client_id"], **how},
    )  # fmt: skip
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
    back = {"code": code, "iss": service.issuer_url(base_url(request), realm)}
    if "state" in params:
        back["state"] = params["state"]
    done = RedirectResponse(with_query(params["redirect_uri"], back), status_code=303)
    done.delete_cookie(CSRF_COOKIE, path="/realms/" + realm)
    return done
