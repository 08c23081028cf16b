"""The profile page of every signed-in tenant user (``/t/profile``): their e-mail and roles, and
a change of password that needs the current one (the core's ``POST /v1/me/password``, which ends
the user's other sign-in sessions; the shell ends their other web sessions too, this one stays).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.session import WebSession
from plexica.web.shell import FRESH, ROLE_LABELS, PageState, Shell, notice_redirect, tenant_nav

FIELDS = ("current_password", "new_password", "confirm")
CURRENT, NEW, CONFIRM = FIELDS
WRONG = "Your current password is not correct. Nothing was changed."
WRONG_CODE = "That code is not valid. Enter the current code of your authenticator app."


def _check(form: dict[str, str]) -> dict[str, str]:
    """What needs no round trip; the core checks the tenant's password policy (ADR 0243)."""
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
        state: PageState = FRESH,
        *,
        account_url: str | None = None,
        enrolment: dict[str, str] | None = None,
        recovery_codes: list[str] | None = None,
        mfa_error: str | None = None,
    ) -> Response:
        nav, _ = await tenant_nav(shell, session)
        me = await shell.upstream.api(session, "GET", "/v1/me")
        body = me.dict_body() or {}
        roles = [ROLE_LABELS.get(str(r), str(r)) for r in body.get("roles", [])]
        mfa = await shell.upstream.api(session, "GET", "/v1/me/mfa")
        rules = await shell.upstream.api(session, "GET", "/v1/me/password-policy")
        min_length = rules.body.get("min_length", 12) if isinstance(rules.body, dict) else 12
        return shell.form_page(
            request, session, "profile.html", state, me, title="Profile", nav=nav,
            email=body.get("email") or "", roles=roles, account_url=account_url,
            mfa=mfa.dict_body(),
            enrolment=enrolment, recovery_codes=recovery_codes, mfa_error=mfa_error,
            min_length=int(min_length),
        )  # fmt: skip

    shell.page_route(app, "/t/profile", profile_page, operator=False)

    @app.post("/t/profile/password", include_in_schema=False)
    async def change_password(request: Request) -> Response:
        async def change(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            form = {k: str(raw.get(k, "")) for k in FIELDS}
            errors = _check(form)
            if errors:
                return await profile_page(request, session, PageState(422, errors=errors))
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
                state = PageState.refused(done, errors)
                return await profile_page(request, session, state, account_url=account_url)
            # The core has ended the other sign-in sessions; their web sessions go too.
            await shell.end_sessions(session.realm, session.subject, keep=session.id)
            ended = int(done.body.get("sessions_ended", 0)) if isinstance(done.body, dict) else 0
            notice = "Your password was changed." + (
                f" {ended} other session{'s' * (ended != 1)} signed out." if ended else ""
            )
            return notice_redirect("/t/profile", notice)

        return await shell.run(request, change, operator=False)

    # Two-step sign-in (ADR 0232): the core's /v1/me/mfa, one form each step.
    @app.post("/t/profile/mfa", include_in_schema=False)
    async def start_mfa(request: Request) -> Response:
        async def start(request: Request, session: WebSession) -> Response:
            done = await shell.upstream.api(session, "POST", "/v1/me/mfa/totp")
            if not done.ok or not isinstance(done.body, dict):
                return await profile_page(
                    request, session, PageState(done.status), mfa_error=done.error_message()
                )
            started = {"secret": str(done.body["secret"]), "uri": str(done.body["otpauth_uri"])}
            return await profile_page(request, session, enrolment=started)

        return await shell.run(request, start, operator=False)

    @app.post("/t/profile/mfa/confirm", include_in_schema=False)
    async def confirm_mfa(request: Request) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            # The secret rides along only to show it again after a wrong code; the core
            # checks the code against the one it keeps.
            enrolment = {k: str(raw.get(k, ""))[:300] for k in ("secret", "uri")}
            done = await shell.upstream.api(
                session, "POST", "/v1/me/mfa/totp/confirm", json={"code": _code(raw)}
            )
            if not done.ok or not isinstance(done.body, dict):
                return await profile_page(
                    request, session, PageState(done.status), enrolment=enrolment,
                    mfa_error=WRONG_CODE if done.status == 422 else done.error_message(),
                )  # fmt: skip
            return await profile_page(
                request, session, recovery_codes=[str(c) for c in done.body["recovery_codes"]]
            )

        return await shell.run(request, confirm, operator=False)

    @app.post("/t/profile/mfa/disable", include_in_schema=False)
    async def disable_mfa(request: Request) -> Response:
        async def disable(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            done = await shell.upstream.api(
                session, "POST", "/v1/me/mfa/disable", json={"code": _code(raw)}
            )
            if not done.ok:
                return await profile_page(
                    request, session, PageState(done.status),
                    mfa_error=WRONG_CODE if done.status == 422 else done.error_message(),
                )  # fmt: skip
            return notice_redirect("/t/profile", "Two-step verification is off.")

        return await shell.run(request, disable, operator=False)


def _code(raw: Any) -> str:
    return str(raw.get("code", "")).strip()[:64] or "-"
