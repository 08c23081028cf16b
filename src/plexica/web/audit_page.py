"""The audit log viewer: the tenant admin's (``/t/admin/audit``, their tenant's entries) and the
operator's (``/console/audit``, every tenant's), over the core's ``/v1/audit``: its filters, and
its ``before`` cursor for older pages. The core decides who may read what."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.session import WebSession
from plexica.web.shell import Shell, console_nav, tenant_nav

PAGE_SIZE = 50
TEXT_FILTERS = ("actor", "action", "target")
TIME_FILTERS = ("since", "until")
# What <input type="datetime-local"> sends (seconds only when the user typed them).
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
BAD_TIME = "Enter a date and time (UTC), for example 2026-12-07T09:30."
NavFn = Callable[[WebSession], Awaitable[list[dict[str, Any]]]]


def _utc(value: str) -> str | None:
    """A time of the form, read as UTC, in the API's ISO 8601 with offset; None if not one."""
    for fmt in LOCAL_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).isoformat()
        except ValueError:
            continue
    return None


def _when(value: Any) -> str:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _details(entry: dict[str, Any]) -> str:
    shown = {k: entry.get(k) for k in ("before", "after", "trace_id") if entry.get(k) is not None}
    return json.dumps(shown, indent=1, sort_keys=True, ensure_ascii=False) if shown else ""


def _row(entry: dict[str, Any]) -> dict[str, str]:
    return {
        "when": _when(entry.get("at")),
        "actor": str(entry.get("actor") or ""),
        "action": str(entry.get("action") or ""),
        "target": str(entry.get("target") or ""),
        "tenant": str(entry.get("tenant_id") or ""),
        "request_id": str(entry.get("request_id") or ""),
        "details": _details(entry),
    }


def _query(
    raw: dict[str, str],
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The form as typed, the API's query parameters, and the errors of the fields."""
    form = {k: raw.get(k, "").strip() for k in (*TEXT_FILTERS, *TIME_FILTERS)}
    params = {k: form[k] for k in TEXT_FILTERS if form[k]}
    errors: dict[str, str] = {}
    for key in TIME_FILTERS:
        if form[key]:
            at = _utc(form[key])
            if at is None:
                errors[key] = BAD_TIME
            else:
                params[key] = at
    before = raw.get("before", "").strip()
    if before:
        if before.isdigit() and before != "0":
            params["before"] = before
        else:
            errors["before"] = "This page of older entries does not exist."
    return form, params, errors


async def audit_view(
    shell: Shell,
    request: Request,
    session: WebSession,
    nav: list[dict[str, Any]],
    *,
    tenant_column: bool,
) -> Response:
    form, params, errors = _query(dict(request.query_params))
    filled = {k: v for k, v in form.items() if v}
    status, rows, older, error = 200, [], None, None
    if errors:
        status = 422
    else:
        got = await shell.upstream.api(
            session, "GET", "/v1/audit", params={**params, "limit": str(PAGE_SIZE)}
        )
        if got.status in (403, 404):
            return shell.page(
                request, session, "error.html", got.status, title="Audit log", nav=nav,
                message="You may not read this organisation's audit log.",
            )  # fmt: skip
        if got.ok and isinstance(got.body, dict):
            rows = [_row(e) for e in got.body.get("items", []) if isinstance(e, dict)]
            cursor = got.body.get("next_before")
            older = f"?{urlencode({**filled, 'before': cursor})}" if cursor else None
        else:
            status = got.status
            errors = {k: v for k, v in got.field_errors().items() if k in (*form, "before")}
            error = None if errors else got.error_message()
    return shell.page(
        request, session, "audit.html", status, title="Audit log", nav=nav, rows=rows,
        form=form, errors=errors, error=error, older=older, tenant_column=tenant_column,
        newest=f"?{urlencode(filled)}" if "before" in params else None,
    )  # fmt: skip


def audit_routes(app: FastAPI, shell: Shell) -> None:
    async def tenant_menu(session: WebSession) -> list[dict[str, Any]]:
        nav, _ = await tenant_nav(shell, session)
        return nav

    async def console_menu(_: WebSession) -> list[dict[str, Any]]:
        return console_nav()

    def viewer(nav_of: NavFn, *, tenant_column: bool) -> Callable[..., Awaitable[Response]]:
        async def show(request: Request, session: WebSession) -> Response:
            return await audit_view(
                shell, request, session, await nav_of(session), tenant_column=tenant_column
            )

        return show

    @app.get("/t/admin/audit", include_in_schema=False)
    async def tenant_audit(request: Request) -> Response:
        return await shell.run(request, viewer(tenant_menu, tenant_column=False), operator=False)

    @app.get("/console/audit", include_in_schema=False)
    async def console_audit(request: Request) -> Response:
        return await shell.run(request, viewer(console_menu, tenant_column=True), operator=True)
