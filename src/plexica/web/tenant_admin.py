"""Tenant administration pages: users and roles, branding (name, colour, logo), and the tenant
chosen from the host name (ADR 0092, 0093); the audit log is ``audit_page``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from plexica.tenants.schemas import LOGO_MAX_BYTES, LOGO_TYPES
from plexica.web.branding import COLOUR_RE, ETAG_RE
from plexica.web.session import WebSession
from plexica.web.shell import (
    FRESH,
    NO_SUCH_ACTION,
    ROLE_LABELS,
    PageFn,
    PageState,
    Shell,
    form_fields,
    notice_redirect,
    save_or_page,
    tenant_nav,
)
from plexica.web.upstream import CORE

NO_INVITE = {"invite_email": "", "invite_role": "member"}
NO_SUCH_USER = PageState(404, error="No such user.")
# Requests that never depend on the tenant of the host.
HOSTLESS_PREFIXES = ("/static/", "/health", "/ready", "/metrics")


def register_host_tenant(app: FastAPI, shell: Shell) -> None:
    """On ``<slug>.<PLEXICA_WEB_BASE_DOMAIN>`` the host names the tenant: ``request.state.
    host_slug`` is set, and an unknown one gets a 404 page before any route runs."""

    @app.middleware("http")
    async def host_tenant(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        label = shell.hosts.label_of(request)
        request.state.host_slug = None
        if label is None or request.url.path.startswith(HOSTLESS_PREFIXES):
            return await call_next(request)
        if not await shell.hosts.exists(label):
            return shell.page(
                request, None, "error.html", 404, title="Organisation not found",
                message=f"No organisation uses the address {label}.{shell.hosts.base}. "
                "Check the address, or sign in from the main page.",
            )  # fmt: skip
        request.state.host_slug = label
        return await call_next(request)


def register_tenant_admin(app: FastAPI, shell: Shell) -> None:
    _users(app, shell)
    _branding(app, shell)
    _logo(app, shell)


def _user_id(raw: str) -> str | None:
    try:
        return str(UUID(raw))
    except ValueError:
        return None


def _users(app: FastAPI, shell: Shell) -> None:
    async def users_page(
        request: Request,
        session: WebSession,
        state: PageState = FRESH,
        *,
        created: dict[str, str] | None = None,
        chosen: dict[str, list[str]] | None = None,
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        listed = await shell.upstream.api(session, "GET", "/v1/users")
        roles = await shell.upstream.api(session, "GET", "/v1/roles")
        invites = await shell.upstream.api(session, "GET", "/v1/invites")
        grants = (
            {str(r["role"]): [str(p) for p in r.get("permissions", [])] for r in roles.body}
            if roles.ok and isinstance(roles.body, list)
            else {role: [] for role in ROLE_LABELS}
        )
        names = list(grants)
        return shell.form_page(
            request, session, "users.html", state, listed, title="Users", nav=nav,
            users=listed.list_body(),
            roles=[(r, ROLE_LABELS.get(r, r)) for r in sorted(names, key=lambda r: r != "member")],
            form=state.form or {"email": "", "role": "member", **NO_INVITE}, created=created,
            invites=invites.list_body(),
            chosen=chosen or {}, me=session.claims().get("sub"), grants=grants,
        )  # fmt: skip

    def back(notice: str) -> Response:
        return notice_redirect("/t/admin/users", notice)

    async def email_of(session: WebSession, user_id: str) -> str | None:
        listed = await shell.upstream.api(session, "GET", "/v1/users")
        found = [u for u in listed.body if u.get("id") == user_id] if listed.ok else []
        return str(found[0]["email"]) if found else None

    shell.page_route(app, "/t/admin/users", users_page, operator=False)

    @app.post("/t/admin/users", include_in_schema=False)
    async def admin_add_user(request: Request) -> Response:
        async def add(request: Request, session: WebSession) -> Response:
            form = await form_fields(request, ("email", "role"))
            made = await shell.upstream.api(
                session, "POST", "/v1/users", json={"email": form["email"], "roles": [form["role"]]}
            )
            if not made.ok:
                return await users_page(
                    request, session, PageState.refused(made, made.field_errors(), form)
                )
            body = made.body if isinstance(made.body, dict) else {}
            # Shown once on this answer (not a redirect): the password is never in a URL.
            created = {"email": form["email"], "password": str(body.get("initial_password", ""))}
            return await users_page(request, session, PageState(201), created=created)

        return await shell.run(request, add, operator=False)

    @app.post("/t/admin/users/{user_id}/roles", include_in_schema=False)
    async def admin_user_roles(request: Request, user_id: str) -> Response:
        async def save(request: Request, session: WebSession) -> Response:
            uid = _user_id(user_id)
            wanted = [str(r) for r in (await request.form()).getlist("roles")]
            if uid is None:
                return await users_page(request, session, NO_SUCH_USER)
            state = PageState(422, errors={uid: "Choose at least one role."})
            if wanted:
                done = await shell.upstream.api(
                    session, "PUT", f"/v1/users/{uid}/roles", json={"roles": wanted}
                )
                if done.ok:
                    return back(f"Roles of {done.body.get('email', 'the user')} saved.")
                state = PageState.on_field(done, uid)
            return await users_page(request, session, state, chosen={uid: wanted})

        return await shell.run(request, save, operator=False)

    @app.get("/t/admin/users/{user_id}/disable", include_in_schema=False)
    async def admin_disable_confirm(request: Request, user_id: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            nav, _ = await tenant_nav(shell, session)
            uid = _user_id(user_id)
            email = await email_of(session, uid) if uid else None
            if uid is None or email is None:
                return shell.page(
                    request, session, "error.html", 404, title="Not found", nav=nav,
                    message="No such user in your organisation.",
                )  # fmt: skip
            return shell.page(
                request, session, "confirm.html", title=f"Disable {email}", nav=nav,
                heading=f"Disable {email}?",
                warning="Their web sessions end now and they cannot sign in until enabled "
                "again. Their data is kept.",
                action_url=f"/t/admin/users/{quote(uid)}/disable",
                confirm_label="Yes, disable", danger=True, cancel_url="/t/admin/users",
            )  # fmt: skip

        return await shell.run(request, confirm, operator=False)

    @app.post("/t/admin/users/{user_id}/sessions/end", include_in_schema=False)
    async def admin_end_sessions(request: Request, user_id: str) -> Response:
        async def end(request: Request, session: WebSession) -> Response:
            uid = _user_id(user_id)
            # The core decides: only an admin lists the users, and only its own tenant's.
            email = await email_of(session, uid) if uid else None
            if uid is None or email is None:
                return await users_page(request, session, NO_SUCH_USER)
            ended = await shell.end_sessions(session.realm, uid)
            return back(f"Signed {email} out of {ended} web session{'s' * (ended != 1)}.")

        return await shell.run(request, end, operator=False)

    @app.post("/t/admin/users/{user_id}/{action}", include_in_schema=False)
    async def admin_user_state(request: Request, user_id: str, action: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            uid = _user_id(user_id)
            if uid is None or action not in ("enable", "disable"):
                return await users_page(request, session, NO_SUCH_ACTION)
            done = await shell.upstream.api(session, "POST", f"/v1/users/{uid}/{action}")
            if not done.ok:
                return await users_page(request, session, PageState.on_field(done, uid))
            if action == "disable":
                await shell.end_sessions(session.realm, uid)
            return back(f"User {done.body.get('email', '')} {action}d.")

        return await shell.run(request, act, operator=False)

    for more in (_security_admin, _invite_admin):
        more(app, shell, users_page, back)


POLICY_NUMBERS = ("password_min_length", "session_max_hours", "session_idle_minutes")


def _security_admin(
    app: FastAPI, shell: Shell, users_page: PageFn, back: Callable[[str], Response]
) -> None:
    """The tenant's sign-in policy, and a user's two-step verification turned off, from the
    users page (ADR 0232)."""

    @app.post("/t/admin/mfa/{user_id}/reset", include_in_schema=False)
    async def admin_mfa_reset(request: Request, user_id: str) -> Response:
        async def reset(request: Request, session: WebSession) -> Response:
            uid = _user_id(user_id)
            if uid is None:
                return await users_page(request, session, NO_SUCH_USER)
            done = await shell.upstream.api(session, "POST", f"/v1/users/{uid}/mfa/reset")
            if not done.ok:
                return await users_page(request, session, PageState.on_field(done, uid))
            return back("Two-step verification turned off for that user.")

        return await shell.run(request, reset, operator=False)

    async def security_page(
        request: Request, session: WebSession, state: PageState = FRESH
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        found = await shell.upstream.api(session, "GET", "/v1/security-policy")
        policy = found.dict_body()
        return shell.form_page(
            request, session, "security.html", state, found, title="Sign-in security", nav=nav,
            policy=policy and {**policy, **(state.form or {})},
        )  # fmt: skip

    shell.page_route(app, "/t/admin/security", security_page, operator=False)

    @app.post("/t/admin/security", include_in_schema=False)
    async def admin_security(request: Request) -> Response:
        async def save(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            required = raw.get("mfa_required") == "on"
            sent: dict[str, Any] = {"mfa_required": required}
            errors: dict[str, str] = {}
            for name in POLICY_NUMBERS:
                text = str(raw.get(name, "")).strip()[:12]
                sent[name] = int(text) if text.isdigit() else text
                if not text.isdigit():
                    errors[name] = "Enter a whole number."
            if errors:
                return await security_page(request, session, PageState(422, sent, errors))
            done = await shell.upstream.api(session, "PUT", "/v1/security-policy", json=sent)
            if not done.ok:
                errors = {k: v for k, v in done.field_errors().items() if k in sent}
                return await security_page(request, session, PageState.refused(done, errors, sent))
            notice = "Sign-in security saved. " + (
                "Two-step verification is required: users without it set it up at their next "
                "sign-in." if required else "Two-step verification is optional."
            )  # fmt: skip
            return notice_redirect("/t/admin/security", notice)

        return await shell.run(request, save, operator=False)


def _invite_admin(
    app: FastAPI, shell: Shell, users_page: PageFn, back: Callable[[str], Response]
) -> None:
    """Invitations by e-mail from the users page (ADR 0225)."""

    @app.post("/t/admin/invites", include_in_schema=False)
    async def admin_invite(request: Request) -> Response:
        async def send(request: Request, session: WebSession) -> Response:
            form = await form_fields(request, ("invite_email", "invite_role"))
            made = await shell.upstream.api(
                session, "POST", "/v1/invites",
                json={"email": form["invite_email"], "roles": [form["invite_role"]]},
            )  # fmt: skip
            if not made.ok:
                found = made.field_errors()
                errors = {"invite_" + ("role" if k == "roles" else k): v for k, v in found.items()}
                sent = {"email": "", "role": "member", **form}
                return await users_page(request, session, PageState.refused(made, errors, sent))
            return back(f"Invitation sent to {form['invite_email'].lower()}.")

        return await shell.run(request, send, operator=False)

    @app.post("/t/admin/invites/{invite_id}/{action}", include_in_schema=False)
    async def admin_invite_action(request: Request, invite_id: str, action: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            iid = _user_id(invite_id)
            if iid is None or action not in ("resend", "revoke"):
                return await users_page(request, session, NO_SUCH_ACTION)
            method, path = (
                ("POST", f"/v1/invites/{iid}/resend")
                if action == "resend"
                else ("DELETE", f"/v1/invites/{iid}")
            )
            done = await shell.upstream.api(session, method, path)
            if not done.ok:
                state = PageState(done.status, error=done.error_message())
                return await users_page(request, session, state)
            verb = "sent again to" if action == "resend" else "withdrawn for"
            return back(f"Invitation {verb} {done.body.get('email', '')}.")

        return await shell.run(request, act, operator=False)


def _branding(app: FastAPI, shell: Shell) -> None:
    async def branding_page(
        request: Request, session: WebSession, state: PageState = FRESH
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        brand = getattr(request.state, "brand", None)
        current = {
            "name": (brand.name if brand else None) or "",
            "primary_color": (brand.colour if brand else None) or "",
        }
        return shell.form_page(
            request, session, "branding.html", state, title="Branding", nav=nav,
            form=state.form or current, logo=brand.logo if brand else None,
        )  # fmt: skip

    def back(notice: str) -> Response:
        return notice_redirect("/t/admin/branding", notice)

    shell.page_route(app, "/t/admin/branding", branding_page, operator=False)

    @app.post("/t/admin/branding", include_in_schema=False)
    async def admin_branding_save(request: Request) -> Response:
        async def save(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            form = {k: str(raw.get(k, "")).strip() for k in ("name", "primary_color")}
            # A form without the name field (a script, an older page) leaves the name as is.
            change = {k: v for k, v in form.items() if k in raw}
            errors: dict[str, str] = {}
            if "name" in change and not change["name"]:
                errors["name"] = "Enter the organisation's name."
            if not COLOUR_RE.match(form["primary_color"]):
                errors["primary_color"] = "Enter a colour as #rrggbb, for example #1d4ed8."
            save = partial(shell.upstream.api, session, "PATCH", "/v1/tenant/branding", json=change)
            return await save_or_page(
                request,
                session,
                branding_page,
                form,
                errors,
                save=save,
                to="/t/admin/branding",
                notice="Branding saved.",
            )

        return await shell.run(request, save, operator=False)

    @app.post("/t/admin/branding/logo", include_in_schema=False)
    async def admin_logo_upload(request: Request) -> Response:
        async def upload(request: Request, session: WebSession) -> Response:
            file = (await request.form()).get("logo")
            problem = None
            data = b""
            if not isinstance(file, UploadFile) or not file.filename:
                problem = "Choose an image file (PNG, JPEG, GIF or WebP)."
            else:
                # One byte past the limit is enough to refuse without reading the rest.
                data = await file.read(LOGO_MAX_BYTES + 1)
                if len(data) > LOGO_MAX_BYTES:
                    problem = f"The image is larger than {LOGO_MAX_BYTES // 1024} KiB."
            if problem is None:
                declared = file.content_type if isinstance(file, UploadFile) else None
                done = await shell.upstream.api(
                    session, "PUT", "/v1/tenant/branding/logo", content=data,
                    headers={"Content-Type": declared or "application/octet-stream"},
                )  # fmt: skip
                if done.ok:
                    return back("Logo uploaded.")
                problem = done.error_message()
            return await branding_page(request, session, PageState(422, errors={"logo": problem}))

        return await shell.run(request, upload, operator=False)

    @app.post("/t/admin/branding/logo/delete", include_in_schema=False)
    async def admin_logo_delete(request: Request) -> Response:
        async def remove(request: Request, session: WebSession) -> Response:
            done = await shell.upstream.api(session, "DELETE", "/v1/tenant/branding/logo")
            if not done.ok and done.status != 404:
                return await branding_page(request, session, PageState.on_field(done, "logo"))
            return back("Logo removed.")

        return await shell.run(request, remove, operator=False)


def _logo(app: FastAPI, shell: Shell) -> None:
    @app.get("/t/branding/logo", include_in_schema=False)
    async def logo(request: Request, v: str = "") -> Response:
        """The tenant's logo for the header, with the user's own token; never anything but a
        raster image, and cacheable because its URL carries its version."""
        session = await shell.read(request)
        host_slug = getattr(request.state, "host_slug", None)
        if session is None or (host_slug and session.realm != f"plexica-{host_slug}"):
            return Response(status_code=404)
        try:
            answer = await shell.upstream.call(session, "GET", CORE + "/v1/tenant/branding/logo")
        except httpx.HTTPError:
            return Response(status_code=502)
        content_type = answer.headers.get("content-type", "").split(";")[0].strip()
        if answer.status_code != 200 or content_type not in LOGO_TYPES:
            return Response(status_code=404)
        cache = "private, max-age=86400" if ETAG_RE.match(v) else "private, no-cache"
        return Response(
            answer.content, media_type=content_type,
            headers={
                "Cache-Control": cache, "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )  # fmt: skip
