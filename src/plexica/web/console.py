"""The operator console: tenants and their lifecycle, the plugin catalog and health (the audit
log is ``audit_page``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from plexica.web.health import health_row
from plexica.web.session import WebSession
from plexica.web.shell import (
    FRESH,
    NO_SUCH_ACTION,
    PageState,
    Shell,
    console_nav,
    form_fields,
    notice_redirect,
    redirect_or_page,
)

TENANT_STATES = ("provisioning", "active", "suspended", "pending_deletion", "deleted", "failed")
CONFIRM_TEXT = {
    "suspend": "Its users will be unable to sign in or call the API until it is reactivated.",
    "reactivate": "Its users will be able to sign in again.",
    "delete": "The tenant will be deleted after the retention window; its users lose access now.",
}
# The server's error codes that belong to one field of the tenant form.
TENANT_FIELD_CODES = {
    "invalid_slug": "slug",
    "tenant_exists": "slug",
    "invalid_email": "admin_email",
}


def console_routes(app: FastAPI, shell: Shell) -> None:
    _tenants(app, shell)
    _catalog(app, shell)


def _check_rows(body: Any) -> list[tuple[str, dict[str, str]]]:
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    rows: list[tuple[str, dict[str, str]]] = []
    for name, check in sorted(checks.items()):
        if isinstance(check, dict):
            status = str(check.get("status", "unknown"))
            detail = ", ".join(f"{k}: {v}" for k, v in check.items() if k != "status")
        else:
            status, detail = str(check), ""
        rows.append((name, {"status": status, "detail": detail}))
    return rows


def _tenants(app: FastAPI, shell: Shell) -> None:

    async def tenants_page(
        request: Request, session: WebSession, state: PageState = FRESH
    ) -> Response:
        state_shown = request.query_params.get("state", "")
        after = request.query_params.get("after", "")[:63]
        params = {"state": state_shown} if state_shown in TENANT_STATES else {}
        if after:
            params["after"] = after
        listed = await shell.upstream.api(session, "GET", "/v1/tenants", params=params)
        tenants = listed.body.get("items", []) if listed.ok else []
        following = listed.body.get("next") if listed.ok else None
        next_url = None
        if following:
            next_url = "/console/tenants?" + urlencode({**params, "after": following})
        return shell.form_page(
            request, session, "tenants.html", state, listed, title="Tenants", nav=console_nav(),
            tenants=tenants, states=TENANT_STATES, state=state_shown, after=after,
            next_url=next_url, form=state.form or {"slug": "", "name": "", "admin_email": ""},
        )  # fmt: skip

    shell.page_route(app, "/console/tenants", tenants_page, operator=True)

    @app.post("/console/tenants", include_in_schema=False)
    async def console_create(request: Request) -> Response:
        async def create(request: Request, session: WebSession) -> Response:
            form = await form_fields(request, ("slug", "name", "admin_email"))
            made = await shell.upstream.api(
                session, "POST", "/v1/tenants", json=form, headers={"Prefer": "respond-async"}
            )
            if made.status == 202:
                return RedirectResponse(f"/console/provisioning/{quote(form['slug'])}", 303)
            if made.ok:
                return notice_redirect("/console/tenants", f"Tenant {form['slug']} created.")
            errors = made.form_errors(TENANT_FIELD_CODES)
            # The core's own failure is a bad gateway here.
            status = made.status if made.status < 500 else 502
            state = replace(PageState.refused(made, errors, form), status=status)
            return await tenants_page(request, session, state)

        return await shell.run(request, create, operator=True)

    @app.get("/console/tenants/{slug}", include_in_schema=False)
    async def console_tenant(request: Request, slug: str) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            path = f"/v1/tenants/{quote(slug, safe='')}"
            tenant, steps, invite = await asyncio.gather(
                shell.upstream.api(session, "GET", path),
                shell.upstream.api(session, "GET", f"{path}/steps"),
                shell.upstream.api(session, "GET", f"{path}/admin-invite"),
            )
            if not tenant.ok:
                return shell.page(
                    request, session, "error.html", tenant.status, title="Not found",
                    nav=console_nav(), message=tenant.error_message(),
                )  # fmt: skip
            return shell.page(
                request, session, "tenant_detail.html", title=slug, nav=console_nav(),
                tenant=tenant.body, steps=steps.body if steps.ok else {"steps": [], "history": []},
                admin_invite=invite.body if invite.ok else None,
                error=None if steps.ok else steps.error_message(),
                notice=request.query_params.get("notice"),
            )  # fmt: skip

        return await shell.run(request, show, operator=True)

    # Before the generic /{action} routes, which would take this path first.
    @app.post("/console/tenants/{slug}/admin-invite", include_in_schema=False)
    async def console_invite_admin(request: Request, slug: str) -> Response:
        async def send(request: Request, session: WebSession) -> Response:
            sent = await shell.upstream.api(
                session, "POST", f"/v1/tenants/{quote(slug, safe='')}/admin-invite"
            )
            notice = (
                f"Invitation sent again to {sent.body['email']}; the previous link no longer works."
                if sent.ok
                else sent.error_message()
            )
            return notice_redirect(f"/console/tenants/{quote(slug, safe='')}", notice)

        return await shell.run(request, send, operator=True)

    def no_such_action(request: Request, session: WebSession) -> Response:
        return shell.page(
            request, session, "error.html", 404, title="Not found",
            message="No such action.", nav=console_nav(),
        )  # fmt: skip

    @app.get("/console/tenants/{slug}/{action}", include_in_schema=False)
    async def console_confirm(request: Request, slug: str, action: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            if action not in CONFIRM_TEXT:
                return no_such_action(request, session)
            return shell.page(
                request, session, "confirm.html", title=f"{action} {slug}", nav=console_nav(),
                heading=f"{action.capitalize()} tenant {slug}?", warning=CONFIRM_TEXT[action],
                action_url=f"/console/tenants/{quote(slug, safe='')}/{action}",
                confirm_label=f"Yes, {action}", danger=action == "delete",
                cancel_url="/console/tenants",
            )  # fmt: skip

        return await shell.run(request, confirm, operator=True)

    @app.post("/console/tenants/{slug}/{action}", include_in_schema=False)
    async def console_act(request: Request, slug: str, action: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            if action not in CONFIRM_TEXT:
                return no_such_action(request, session)
            path = f"/v1/tenants/{quote(slug, safe='')}"
            if action == "delete":
                done = await shell.upstream.api(session, "DELETE", path)
            else:
                done = await shell.upstream.api(session, "POST", f"{path}/{action}")
            notice = f"Tenant {slug}: {action} done."
            return await redirect_or_page(
                request, session, done, tenants_page, to="/console/tenants", notice=notice
            )

        return await shell.run(request, act, operator=True)


def _catalog(app: FastAPI, shell: Shell) -> None:
    async def catalog_page(
        request: Request, session: WebSession, state: PageState = FRESH
    ) -> Response:
        listed = await shell.upstream.api(session, "GET", "/v1/plugins")
        return shell.form_page(
            request, session, "catalog.html", state, listed, title="Plugin catalog",
            nav=console_nav(), versions=listed.list_body(),
        )  # fmt: skip

    shell.page_route(app, "/console/plugins", catalog_page, operator=True)

    @app.post("/console/plugins/{plugin_id}/{version}/{action}", include_in_schema=False)
    async def console_plugin_action(
        request: Request, plugin_id: str, version: str, action: str
    ) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            if action not in ("publish", "deprecate"):
                return await catalog_page(request, session, NO_SUCH_ACTION)
            path = f"/v1/plugins/{quote(plugin_id, safe='')}/versions/{quote(version, safe='')}"
            done = await shell.upstream.api(session, "POST", f"{path}/{action}")
            notice = f"{plugin_id} {version}: {action} done."
            return await redirect_or_page(
                request, session, done, catalog_page, to="/console/plugins", notice=notice
            )

        return await shell.run(request, act, operator=True)

    @app.get("/console/health", include_in_schema=False)
    async def console_health(request: Request) -> Response:
        async def health(request: Request, session: WebSession) -> Response:
            ready = await shell.upstream.ready(session)
            return shell.page(
                request, session, "health.html", title="Health", nav=console_nav(),
                ready=ready.ok, checks=_check_rows(ready.body),
            )  # fmt: skip

        return await shell.run(request, health, operator=True)

    @app.get("/console/tenant-health", include_in_schema=False)
    async def console_tenant_health(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            found = await shell.upstream.api(session, "GET", "/v1/tenant-health")
            body = found.dict_body() or {}
            return shell.page(
                request, session, "tenant_health.html", title="Tenant health",
                nav=console_nav(), rows=[health_row(t) for t in body.get("tenants", [])],
                sources=body.get("sources", []), unreachable=body.get("unreachable", []),
                error=None if found.ok else found.error_message(),
            )  # fmt: skip

        return await shell.run(request, show, operator=True)
