"""The operator console's feature flags: list, create, toggle, per-tenant overrides and the
percentage rollout, through the core's ``/v1/flags`` API (which audits every change). Toggles
and removals go through a confirmation page; every form carries the session's CSRF token
(ADR 0096)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.session import WebSession
from plexica.web.shell import (
    FRESH,
    PageState,
    Shell,
    console_nav,
    form_fields,
    notice_redirect,
    redirect_or_page,
)

FLAG_KEY_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,127}$")
VARIANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The server's error codes that belong to one field of the create form.
FLAG_FIELD_CODES = {"flag_exists": "key", "invalid_flag": "variants"}


def _path(key: str) -> str:
    return f"/v1/flags/{quote(key, safe='')}"


def _page_of(key: str) -> str:
    return f"/console/flags/{quote(key, safe='')}"


def parse_variants(text: str) -> tuple[dict[str, str] | None, str | None]:
    """``name=value`` per line (or comma), for a variant flag's string values."""
    variants: dict[str, str] = {}
    for raw in re.split(r"[\n,]", text):
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not VARIANT_RE.match(name):
            return None, f"Write each variant as name=value (letters, digits, _ . -): {line!r}"
        variants[name] = value.strip()
    if not variants:
        return None, "A variant flag needs at least one variant, e.g. blue=#00f."
    return variants, None


def console_flags_routes(app: FastAPI, shell: Shell) -> None:  # noqa: PLR0915 - one route set
    async def list_page(
        request: Request, session: WebSession, state: PageState = FRESH
    ) -> Response:
        listed = await shell.upstream.api(session, "GET", "/v1/flags")
        return shell.form_page(
            request, session, "flags.html", state, listed, title="Feature flags",
            nav=console_nav(), flags=listed.list_body(),
            form=state.form or {"key": "", "description": "", "kind": "boolean",
                                "default": "off", "variants": ""},
        )  # fmt: skip

    async def current(session: WebSession, key: str) -> dict[str, Any] | None:
        got = await shell.upstream.api(session, "GET", _path(key))
        return got.dict_body()

    async def flag_page(
        request: Request, session: WebSession, state: PageState = FRESH, *, key: str
    ) -> Response:
        got = await shell.upstream.api(session, "GET", _path(key))
        if not got.ok or not isinstance(got.body, dict):
            return shell.page(
                request, session, "error.html", got.failure_status,
                title="Not found", nav=console_nav(), message=got.error_message(),
            )  # fmt: skip
        changes = await shell.upstream.api(session, "GET", f"{_path(key)}/changes?limit=20")
        variants = got.body.get("variants") or {}
        return shell.form_page(
            request, session, "flag.html", state, title=f"Flag {key}", nav=console_nav(),
            flag=got.body, form=state.form or {},
            variant_options=[(v, f"{v} ({value})") for v, value in variants.items()],
            changes=changes.list_body(),
        )  # fmt: skip

    shell.page_route(app, "/console/flags", list_page, operator=True)

    @app.post("/console/flags", include_in_schema=False)
    async def create(request: Request) -> Response:
        async def made(request: Request, session: WebSession) -> Response:
            form = await form_fields(request, ("key", "description", "kind", "default", "variants"))
            errors: dict[str, str] = {}
            if not FLAG_KEY_RE.match(form["key"]):
                errors["key"] = (
                    "Start with a lowercase letter; then lowercase letters, digits, _ . : - "
                    "(at most 128)."
                )
            body: dict[str, Any] = {"key": form["key"], "description": form["description"]}
            if form["kind"] == "variant":
                variants, problem = parse_variants(form["variants"])
                if problem:
                    errors["variants"] = problem
                elif variants:
                    default = form["default"]
                    if default not in variants:
                        default = next(iter(variants))
                    body |= {"kind": "variant", "variants": variants, "default_variant": default}
            else:
                body["default_variant"] = "on" if form["default"] == "on" else "off"
            if errors:
                return await list_page(request, session, PageState(422, form, errors))
            done = await shell.upstream.api(session, "POST", "/v1/flags", json=body)
            if not done.ok:
                errors = done.form_errors(FLAG_FIELD_CODES)
                return await list_page(request, session, PageState.refused(done, errors, form))
            return notice_redirect(_page_of(form["key"]), f"Flag {form['key']} created.")

        return await shell.run(request, made, operator=True)

    @app.get("/console/flags/{key}", include_in_schema=False)
    async def flag(request: Request, key: str) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            return await flag_page(request, session, key=key)

        return await shell.run(request, show, operator=True)

    @app.get("/console/flags/{key}/toggle", include_in_schema=False)
    async def confirm_toggle(request: Request, key: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            flag = await current(session, key)
            if flag is None:
                return await flag_page(request, session, key=key)
            on = bool(flag.get("enabled"))
            off = flag.get("off_variant")
            warning = (
                f"Every tenant is served the off variant ({off}) within a second, whatever its "
                "targeting: this is the kill switch."
                if on
                else "Targeting applies again within a second: overrides, rollout and default."
            )
            verb = "Turn off" if on else "Turn on"
            return shell.page(
                request, session, "confirm.html", title=f"{verb} {key}", nav=console_nav(),
                heading=f"{verb} flag {key}?", warning=warning,
                action_url=f"{_page_of(key)}/toggle?enabled={'false' if on else 'true'}",
                confirm_label=f"Yes, {verb.lower()}", danger=on, cancel_url=_page_of(key),
            )  # fmt: skip

        return await shell.run(request, confirm, operator=True)

    @app.post("/console/flags/{key}/toggle", include_in_schema=False)
    async def toggle(request: Request, key: str, enabled: bool) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            done = await shell.upstream.api(
                session, "POST", f"{_path(key)}/toggle", json={"enabled": enabled}
            )
            notice = f"Flag {key} is {'on' if enabled else 'off'}."
            page = partial(flag_page, key=key)
            return await redirect_or_page(
                request, session, done, page, to=_page_of(key), notice=notice
            )

        return await shell.run(request, act, operator=True)

    async def patch(
        request: Request,
        session: WebSession,
        key: str,
        change: dict[str, Any],
        *,
        notice: str,
        form: dict[str, str],
    ) -> Response:
        done = await shell.upstream.api(session, "PATCH", _path(key), json=change)
        page = partial(flag_page, key=key)
        return await redirect_or_page(
            request, session, done, page, to=_page_of(key), notice=notice, form=form
        )

    @app.post("/console/flags/{key}/tenants", include_in_schema=False)
    async def set_override(request: Request, key: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            form = await form_fields(request, ("tenant", "variant"))
            flag = await current(session, key)
            if flag is None:
                return await flag_page(request, session, key=key)
            errors: dict[str, str] = {}
            tenant = await shell.upstream.api(
                session, "GET", f"/v1/tenants/{quote(form['tenant'], safe='')}"
            )
            if not form["tenant"] or not tenant.ok:
                errors["tenant"] = "No tenant with this slug."
            if form["variant"] not in flag.get("variants", {}):
                errors["variant"] = "Choose one of the flag's variants."
            if errors:
                return await flag_page(request, session, PageState(422, form, errors), key=key)
            slug = str(tenant.body["slug"])
            tenants = {**flag.get("tenants", {}), slug: form["variant"]}
            return await patch(
                request, session, key, {"tenants": tenants},
                notice=f"Tenant {slug} now gets {form['variant']}.", form=form,
            )  # fmt: skip

        return await shell.run(request, act, operator=True)

    @app.get("/console/flags/{key}/tenants/{tenant}/remove", include_in_schema=False)
    async def confirm_remove_override(request: Request, key: str, tenant: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            return shell.page(
                request, session, "confirm.html", title=f"Remove override {tenant}",
                nav=console_nav(), heading=f"Remove the override of {tenant} on {key}?",
                warning="The tenant gets the flag's rollout or default again within a second.",
                action_url=f"{_page_of(key)}/tenants/{quote(tenant, safe='')}/remove",
                confirm_label="Yes, remove", danger=True, cancel_url=_page_of(key),
            )  # fmt: skip

        return await shell.run(request, confirm, operator=True)

    @app.post("/console/flags/{key}/tenants/{tenant}/remove", include_in_schema=False)
    async def remove_override(request: Request, key: str, tenant: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            flag = await current(session, key)
            if flag is None:
                return await flag_page(request, session, key=key)
            tenants = {k: v for k, v in flag.get("tenants", {}).items() if k != tenant}
            return await patch(
                request, session, key, {"tenants": tenants},
                notice=f"Override of {tenant} removed.", form={},
            )  # fmt: skip

        return await shell.run(request, act, operator=True)

    @app.post("/console/flags/{key}/rollout", include_in_schema=False)
    async def set_rollout(request: Request, key: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            form = await form_fields(request, ("rollout_variant", "percentage"))
            flag = await current(session, key)
            if flag is None:
                return await flag_page(request, session, key=key)
            errors: dict[str, str] = {}
            try:
                percentage = float(form["percentage"])
            except ValueError:
                percentage = -1.0
            if not 0 <= percentage <= 100:
                errors["percentage"] = "Enter a percentage from 0 to 100."
            if form["rollout_variant"] not in flag.get("variants", {}):
                errors["rollout_variant"] = "Choose one of the flag's variants."
            if errors:
                return await flag_page(request, session, PageState(422, form, errors), key=key)
            variant = form["rollout_variant"]
            return await patch(
                request, session, key, {"rollout": {"variant": variant, "percentage": percentage}},
                notice=f"Rollout: {variant} to {percentage:g} % of tenants.", form=form,
            )  # fmt: skip

        return await shell.run(request, act, operator=True)

    @app.get("/console/flags/{key}/rollout/remove", include_in_schema=False)
    async def confirm_remove_rollout(request: Request, key: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            return shell.page(
                request, session, "confirm.html", title=f"Remove rollout of {key}",
                nav=console_nav(), heading=f"Remove the rollout of {key}?",
                warning="Tenants without an override get the default variant within a second.",
                action_url=f"{_page_of(key)}/rollout/remove", confirm_label="Yes, remove",
                danger=True, cancel_url=_page_of(key),
            )  # fmt: skip

        return await shell.run(request, confirm, operator=True)

    @app.post("/console/flags/{key}/rollout/remove", include_in_schema=False)
    async def remove_rollout(request: Request, key: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            return await patch(
                request, session, key, {"rollout": None}, notice="Rollout removed.", form={}
            )

        return await shell.run(request, act, operator=True)
