"""The profile page of every signed-in tenant user (``/t/profile``): their e-mail and roles, and
a change of password that needs the current one (the core's ``POST /v1/me/password``, which ends
the user's other sign-in sessions; the shell ends their other web sessions too, this one stays).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from plexica.web.session import WebSession
from plexica.web.shell import ROLE_LABELS, Shell, tenant_nav

FIELDS = ("current_password", "new_password", "confirm")
CURRENT, NEW, CONFIRM = FIELDS
WRONG = "Your current password is not correct. Nothing was changed."


def _check(form: dict[str, str]) -> dict[str, str]:
    """The same policy as the core's (12 to 256 characters), told before the round trip."""
    errors: dict[str, str] = {}
    if not form[CURRENT]:
        errors[CURRENT] = "Enter your current password."
    if not 12 <= len(form[NEW]) <= 256:
        errors[NEW] = "Use 12 to 256 characters."
    elif form[NEW] != form[CONFIRM]:
        errors[CONFIRM] = "The two new passwords differ."
    return errors


def profile_routes(app: FastAPI, shell: Shell) -> None:
    async def profile_page(
        request: Request,
        session: WebSession,
        *,
        status: int = 200,
        errors: dict[str, str] | None = None,
        error: str | None = None,
        account_url: str | None = None,
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        me = await shell.upstream.api(session, "GET", "/v1/me")
        body = me.body if me.ok and isinstance(me.body, dict) else {}
        roles = [ROLE_LABELS.get(str(r), str(r)) for r in body.get("roles", [])]
        return shell.page(
            request, session, "profile.html", status, title="Profile", nav=nav,
            email=body.get("email") or "", roles=roles, errors=errors or {},
            error=error or (None if me.ok else me.error_message()), account_url=account_url,
            notice=request.query_params.get("notice"),
        )  # fmt: skip

    @app.get("/t/profile", include_in_schema=False)
    async def profile(request: Request) -> Response:
        return await shell.run(request, profile_page, operator=False)

    @app.post("/t/profile/password", include_in_schema=False)
    async def change_password(request: Request) -> Response:
        async def change(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            form = {k: str(raw.get(k, "")) for k in FIELDS}
            errors = _check(form)
            if errors:
                return await profile_page(request, session, status=422, errors=errors)
            done = await shell.upstream.api(
                session, "POST", "/v1/me/password",
                json={CURRENT: form[CURRENT], NEW: form[NEW]},
            )  # fmt: skip
            if not done.ok:
                code = done.error_code()
                if code == "wrong_password":
                    errors = {CURRENT: WRONG}
                elif code == "validation_error":
                    errors = {k: v for k, v in done.field_errors().items() if k in FIELDS}
                account_url = None
                if code == "password_managed_by_provider":
                    # Keycloak's account console, where the user changes it (ADR 0231).
                    account_url = f"{shell.settings.issuer_base_url}/realms/{session.realm}/account"
                return await profile_page(
                    request, session, status=done.status, errors=errors,
                    error=None if errors else done.error_message(), account_url=account_url,
                )  # fmt: skip
            # The core has ended the other sign-in sessions; their web sessions go too.
            await shell.end_sessions(session.realm, session.subject, keep=session.id)
            ended = int(done.body.get("sessions_ended", 0)) if isinstance(done.body, dict) else 0
            notice = "Your password was changed." + (
                f" {ended} other session{'s' * (ended != 1)} signed out." if ended else ""
            )
            return RedirectResponse(f"/t/profile?{urlencode({'notice': notice})}", 303)

        return await shell.run(request, change, operator=False)
