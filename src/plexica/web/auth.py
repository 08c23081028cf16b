"""Signing in and out: the sign-in page, the authorization-code flow with PKCE and its
callback."""

from __future__ import annotations

import re
import secrets
from functools import partial
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response

from plexica.identity.client import pkce_pair
from plexica.identity.names import OPERATOR_REALM
from plexica.web.session import LOGIN_MAX_AGE
from plexica.web.shell import SIGNED_OUT, SUPPORT_ENDED, Shell, notice_redirect, sign_out
from plexica.web.upstream import SessionExpiredError

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
SIGNED_OUT_TEXT = "You are signed out."

NextDep = Annotated[str, Query(alias="next", max_length=2000)]


def _safe_next(target: str | None) -> str:
    """Only paths of this site: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def auth_routes(app: FastAPI, shell: Shell) -> None:

    # --- sign-in -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        session = await shell.read(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if session.realm == OPERATOR_REALM:
            return RedirectResponse("/console/tenants", status_code=303)
        return RedirectResponse("/t", status_code=303)

    @app.get("/login", include_in_schema=False)
    async def login(
        request: Request, back: NextDep = "/", error: str | None = None, notice: str = ""
    ) -> Response:
        host_slug = getattr(request.state, "host_slug", None)
        if host_slug and not error and not notice:
            # The host names the tenant: straight to its realm's sign-in.
            return RedirectResponse(
                f"/login/start?{urlencode({'next': _safe_next(back)})}", status_code=303
            )
        return shell.page(
            request, None, "login.html", title="Sign in", next=_safe_next(back),
            tenant="", tenant_error=None, error=error,
            notice=notice if notice in {SIGNED_OUT_TEXT, SUPPORT_ENDED} else None,
        )  # fmt: skip

    @app.get("/login/start", include_in_schema=False)
    async def login_start(
        request: Request, tenant: str = "", operator: str = "", back: NextDep = "/"
    ) -> Response:
        target = _safe_next(back)
        host_slug = getattr(request.state, "host_slug", None)
        if host_slug:
            realm = f"plexica-{host_slug}"
        elif operator:
            realm = OPERATOR_REALM
        else:
            slug = tenant.strip().lower()
            if not SLUG_RE.match(slug):
                return shell.page(
                    request, None, "login.html", 422, title="Sign in", next=target, tenant=tenant,
                    tenant_error="Enter the slug: lowercase letters, digits and dashes.",
                    error=None,
                )  # fmt: skip
            realm = f"plexica-{slug}"
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        callback = shell.hosts.callback(host_slug)
        response = RedirectResponse(
            shell.upstream.authorize_url(realm, state, challenge, callback), status_code=303
        )
        pending = {
            "realm": realm, "state": state, "verifier": verifier, "next": target,
            "callback": callback,
        }  # fmt: skip
        response.set_cookie(
            shell.login_cookie, shell.signer.dumps(pending), max_age=LOGIN_MAX_AGE,
            httponly=True, samesite="lax", secure=shell.secure, path="/",
        )  # fmt: skip
        return response

    @app.get("/auth/callback", include_in_schema=False)
    async def callback(
        request: Request, code: str = "", state: str = "", error: str = ""
    ) -> Response:
        if state == SIGNED_OUT and not code:
            # Back from the provider's end-session endpoint (its post-logout redirect).
            return notice_redirect("/login", SIGNED_OUT_TEXT)
        pending = shell.signer.loads(request.cookies.get(shell.login_cookie), LOGIN_MAX_AGE)
        if (
            error
            or not code
            or pending is None
            or not secrets.compare_digest(state, str(pending.get("state", "")))
        ):
            message = "Sign-in was cancelled or has expired. Please try again."
            return RedirectResponse(f"/login?{urlencode({'error': message})}", status_code=303)
        try:
            session = await shell.upstream.exchange(
                str(pending["realm"]), code, str(pending["verifier"]), pending.get("callback")
            )
        except SessionExpiredError:
            message = "The identity provider refused the sign-in. Please try again."
            return RedirectResponse(f"/login?{urlencode({'error': message})}", status_code=303)
        response = RedirectResponse(_safe_next(str(pending.get("next", "/"))), status_code=303)
        response.delete_cookie(shell.login_cookie, path="/", secure=shell.secure)
        await shell.start(request, response, session)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        return await shell.run(request, partial(sign_out, shell), operator=None)
