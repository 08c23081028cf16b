"""The invitation page ``/invite/<token>`` (ADR 0225): the invitee, who has no session yet,
chooses a password; the core burns the token, and the browser goes on to sign in.

Without a session the form's CSRF token is a double submit: a random value in the form and in
a signed, path-scoped, ``SameStrict`` cookie; the shell's same-origin check runs first anyway.
Failed links are also throttled here per browser address (the core sees the shell as its
client)."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from plexica.identity.throttle import MemoryThrottle
from plexica.web.session import HOST_PREFIX
from plexica.web.shell import Shell
from plexica.web.upstream import CORE, ApiResult

COOKIE = "plexica_invite"
MAX_AGE = 3600
THROTTLE_REALM = "plexica-invites"
TITLES = {404: "Invitation not found", 410: "Invitation no longer valid", 429: "Too many tries"}


def invite_routes(app: FastAPI, shell: Shell) -> None:
    cookie = (HOST_PREFIX if shell.secure else "") + COOKIE
    throttle = MemoryThrottle()

    def address(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def core(path: str, body: dict[str, Any]) -> ApiResult:
        answer = await shell.upstream.http.post(CORE + path, json=body)
        try:
            parsed: Any = answer.json() if answer.content else None
        except ValueError:
            parsed = answer.text
        return ApiResult(answer.status_code, parsed)

    async def refused(request: Request, got: ApiResult) -> Response:
        if got.status == 404:
            await throttle.failed(THROTTLE_REALM, address(request), address(request))
        status = got.status if got.status in TITLES else 503
        return shell.page(
            request, None, "error.html", status, title=TITLES.get(status, "Try again later"),
            message=got.error_message(),
        )  # fmt: skip

    async def blocked(request: Request) -> Response | None:
        wait = await throttle.blocked(THROTTLE_REALM, address(request), address(request))
        if wait <= 0:
            return None
        got = ApiResult(429, {"error": {"message": "Too many invalid invitation links. "
                                        f"Try again in {int(wait) + 1} seconds."}})  # fmt: skip
        return await refused(request, got)

    def form(
        request: Request, token: str, info: dict[str, Any], status: int = 200, **ctx: Any
    ) -> Response:
        csrf = secrets.token_urlsafe(24)
        action = "/invite/" + quote(token, safe="")
        response = shell.page(
            request, None, "invite.html", status, title="Choose your password",
            email=info.get("email"), tenant=info.get("tenant_slug"), csrf=csrf, action=action,
            min_length=int(info.get("password_min_length", 12)),
            errors=ctx.pop("errors", {}), error=ctx.pop("error", None),
        )  # fmt: skip
        response.set_cookie(
            cookie, shell.signer.dumps({"csrf": csrf}), max_age=MAX_AGE, httponly=True,
            samesite="strict", secure=shell.secure, path=action,
        )  # fmt: skip
        return response

    @app.get("/invite/{token}", include_in_schema=False)
    async def invite_page(request: Request, token: str) -> Response:
        if (stop := await blocked(request)) is not None:
            return stop
        got = await core("/v1/invites/inspect", {"token": token[:200]})
        if not got.ok:
            return await refused(request, got)
        return form(request, token, got.body)

    @app.post("/invite/{token}", include_in_schema=False)
    async def invite_accept(request: Request, token: str) -> Response:
        if (stop := await blocked(request)) is not None:
            return stop
        raw = await request.form()
        sent = str(raw.get("csrf", ""))
        kept = shell.signer.loads(request.cookies.get(cookie), MAX_AGE) or {}
        if not sent or not hmac.compare_digest(sent, str(kept.get("csrf", ""))):
            return shell.page(
                request, None, "error.html", 403, title="Form expired",
                message="The form was refused (missing or invalid CSRF token). "
                "Open the link from your invitation again.",
            )  # fmt: skip
        password, confirm = str(raw.get("password", "")), str(raw.get("confirm", ""))
        info = await core("/v1/invites/inspect", {"token": token[:200]})
        if not info.ok:
            return await refused(request, info)
        if password != confirm:
            return form(request, token, info.body, 422,
                        errors={"confirm": "The two passwords differ."})  # fmt: skip
        got = await core("/v1/invites/accept", {"token": token[:200], "password": password})
        if got.status == 422:
            why = got.field_errors().get("password") or "Use 12 to 256 characters."
            return form(request, token, info.body, 422, errors={"password": why})
        if not got.ok:
            return await refused(request, got)
        slug = got.body.get("tenant_slug") if isinstance(got.body, dict) else None
        query = urlencode({"tenant": slug} if slug else {"operator": "1"})
        response = RedirectResponse(f"/login/start?{query}", status_code=303)
        response.delete_cookie(cookie, path="/invite/" + quote(token, safe=""),
                               secure=shell.secure, httponly=True)  # fmt: skip
        return response
