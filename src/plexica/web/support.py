"""Support access in the shell (ADR 0240): the tenant admin's page that allows or withdraws it,
the operator console's start of a support session, and its end from the banner every page of the
session shows (``Shell.page``)."""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from plexica.web.session import WebSession
from plexica.web.shell import (
    FRESH,
    SUPPORT_ENDED,
    PageState,
    Shell,
    console_nav,
    notice_redirect,
    redirect_or_page,
    tenant_nav,
)

ACCESS = "/v1/support-access"
HOURS = [(h, f"{h} hours" if h > 1 else "1 hour") for h in (1, 4, 8, 24, 72)]


def support_routes(app: FastAPI, shell: Shell) -> None:
    _tenant_side(app, shell)
    _operator_side(app, shell)


def _tenant_side(app: FastAPI, shell: Shell) -> None:
    async def support_page(
        request: Request, session: WebSession, state: PageState = FRESH
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        got = await shell.upstream.api(session, "GET", ACCESS)
        body = got.dict_body() or {}
        return shell.form_page(
            request, session, "support.html", state, got, title="Support access", nav=nav,
            grant=body.get("grant"), sessions=body.get("sessions", []), hours=HOURS,
        )  # fmt: skip

    async def change(request: Request, session: WebSession, method: str, done: str) -> Response:
        form = await request.form()
        payload = {"json": {"hours": str(form.get("hours", ""))}} if method == "PUT" else {}
        answer = await shell.upstream.api(session, method, ACCESS, **payload)
        return await redirect_or_page(
            request, session, answer, support_page, to="/t/admin/support", notice=done
        )

    shell.page_route(app, "/t/admin/support", support_page, operator=False)

    @app.post("/t/admin/support", include_in_schema=False)
    async def admin_allow_support(request: Request) -> Response:
        async def allow(request: Request, session: WebSession) -> Response:
            return await change(request, session, "PUT", "Support access allowed.")

        return await shell.run(request, allow, operator=False)

    @app.post("/t/admin/support/revoke", include_in_schema=False)
    async def admin_revoke_support(request: Request) -> Response:
        async def revoke(request: Request, session: WebSession) -> Response:
            return await change(request, session, "DELETE", "Support access withdrawn.")

        return await shell.run(request, revoke, operator=False)


def _operator_side(app: FastAPI, shell: Shell) -> None:
    @app.post("/console/support/{slug}", include_in_schema=False)
    async def start_support(request: Request, slug: str) -> Response:
        async def start(request: Request, session: WebSession) -> Response:
            form = await request.form()
            body = {"tenant": slug, "email": str(form.get("email", "")).strip()}
            got = await shell.upstream.api(session, "POST", "/v1/support-sessions", json=body)
            if not got.ok:
                return shell.page(
                    request, session, "error.html", got.status, title="Support session refused",
                    nav=console_nav(), message=got.error_message(),
                    back=f"/console/tenants/{quote(slug, safe='')}",
                )  # fmt: skip
            support = WebSession(
                realm=f"plexica-{slug}", access_token=str(got.body["access_token"]),
                refresh_token=None, id_token=got.body.get("id_token"),
                expires_at=time.time() + float(got.body["expires_in"]),
            )  # fmt: skip
            # This browser becomes the support session: the operator's own session ends.
            assert session.id is not None
            await shell.end_sessions(session.realm, session.subject, session.id)
            response = RedirectResponse("/t", status_code=303)
            await shell.start(request, response, support)
            return response

        return await shell.run(request, start, operator=True)

    @app.post("/support/end", include_in_schema=False)
    async def end_support(request: Request) -> Response:
        async def end(request: Request, session: WebSession) -> Response:
            if session.support() is not None:
                await shell.upstream.api(session, "POST", "/v1/support-sessions/current/end")
            assert session.id is not None
            await shell.end_sessions(session.realm, session.subject, session.id)
            response = notice_redirect("/login", SUPPORT_ENDED)
            shell.forget(response)
            return response

        return await shell.run(request, end, operator=False)
