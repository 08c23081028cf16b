"""The built-in provider's side of company sign-in (ADR 0246): the sign-in form sends a user of
the company's domains to its provider, and the provider's answer comes back to
``/realms/{realm}/broker/oidc/endpoint`` (Keycloak's path), where the user's account is found or
made and the sign-in goes on to the client that asked for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.events import service as events
from plexica.events.events import CoreEvent
from plexica.identity import sso
from plexica.identity.oidc_pages import error_page
from plexica.identity.oidc_requests import (
    RealmName,
    address_of,
    base_url,
    enabled_realm,
    issue_code,
    realms_router,
)
from plexica.kit.db import request_db
from plexica.kit.state import core_state
from plexica.settings import Settings

router = realms_router()


async def sso_failed(
    session: AsyncSession, request: Request, realm: str, *, tenant_id: Any, email: str,
    failure: sso.SsoFailure,
) -> None:  # fmt: skip
    """What the admin needs to mend a company sign-in, in the audit log."""
    await audit.record(
        session, email or "anonymous", "identity.sso.failed", tenant_id, f"realm:{realm}",
        after={"reason": failure.reason, "address": address_of(request)},
    )  # fmt: skip


async def company_redirect(
    session: AsyncSession, request: Request, realm: str, params: dict[str, str], tenant_id: Any,
    *, email: str, password: str, wanted: bool, again: Callable[[str, int], Awaitable[Response]],
) -> Response | None:  # fmt: skip
    """To the company's sign-in when the user asks, or when the e-mail is one of its domains and
    no password was given or passwords are not allowed for them; None: the password form."""
    found = await sso.provider(session, realm)
    if found is None:
        return None
    routed = found.routes(email)
    if not (wanted or (routed and (not password or found.required))):
        return None
    try:
        async with httpx.AsyncClient() as http:
            started = await sso.start(
                session, http, realm, found, params, base_url=base_url(request),
                login_hint=email if routed else "", local=sso.local_allowed(_settings(request)),
            )  # fmt: skip
    except sso.SsoFailure as exc:
        await sso_failed(session, request, realm, tenant_id=tenant_id, email=email, failure=exc)
        return await again(exc.message, exc.status)
    response = RedirectResponse(started.url, status_code=303)
    # The answer counts only in the browser that asked (the state alone could be carried to
    # another one). Lax: the provider sends the browser back with a top-level GET.
    response.set_cookie(
        sso.BROWSER_COOKIE, started.browser, max_age=sso.LOGIN_SECONDS, httponly=True,
        samesite="lax", secure=base_url(request).startswith("https://"),
        path=f"/realms/{realm}/broker",
    )  # fmt: skip
    return response


def _settings(request: Request) -> Settings:
    return core_state(request).settings


@router.get("/{realm}/broker/oidc/endpoint")
async def company_answer(
    realm: RealmName, request: Request, *, code: str = "", state: str = "", error: str = ""
) -> Response:
    db = request_db(request)
    async with db.session() as session, httpx.AsyncClient() as http:
        found_realm = await enabled_realm(session, realm)
        if found_realm is None:
            return error_page("This organisation cannot sign in now.", 404)
        tenant_id = found_realm["tenant_id"]
        try:
            done = await sso.answer(
                session, http, realm, state=state[:200], code=code[:4096], error=error[:100],
                browser=request.cookies.get(sso.BROWSER_COOKIE, "")[:100],
                base_url=base_url(request), local=sso.local_allowed(_settings(request)),
            )  # fmt: skip
        except sso.SsoFailure as exc:
            await sso_failed(session, request, realm, tenant_id=tenant_id, email="", failure=exc)
            return error_page(exc.message, exc.status)
        user = done.user
        if done.made:
            await audit.record(
                session, str(user["email"]), "identity.user.created", tenant_id,
                f"user:{user['id']}",
                after={"email": user["email"], "roles": list(user["roles"]), "via": "sso"},
            )  # fmt: skip
            await events.publish(
                session, CoreEvent.USER_INVITED,
                {"user_id": user["id"], "roles": list(user["roles"])},
                tenant_id=tenant_id, subject=f"users/{user['id']}",
            )  # fmt: skip
        issued = await issue_code(
            session, request, realm, done.params, user, tenant_id=tenant_id,
            how={"via": "sso", "issuer": done.issuer},
        )  # fmt: skip
    issued.delete_cookie(sso.BROWSER_COOKIE, path=f"/realms/{realm}/broker")
    return issued
