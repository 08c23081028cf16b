"""The operator console's live provisioning page: a new tenant's saga steps advance on screen
(polled by ``static/live.js``, or by a plain refresh without JavaScript) until the tenant is
ready or a step failed and the completed ones were undone (ADR 0095)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from plexica.web.session import WebSession
from plexica.web.shell import Shell, console_nav

LIVE_HEADER = "X-Plexica-Live"
STEP_LABELS = {
    "schema": "Database schema",
    "identity_realm": "Identity realm and admin user",
    "bucket": "Storage bucket",
    "default_plugins": "Default plugins",
    "admin_invite": "Invitation of the first admin",
}
STATUS_LABELS = {
    "pending": "waiting",
    "running": "running",
    "done": "done",
    "failed": "failed",
    "undone": "undone",
}


def progress_view(status: dict[str, Any]) -> dict[str, Any]:
    """The steps as shown, with the last one of the saga: the event that commits with the
    tenant's new state."""
    steps = [
        {
            "name": s["name"],
            "label": STEP_LABELS.get(s["name"], s["name"].replace("_", " ").capitalize()),
            "status": s["status"],
            "status_label": STATUS_LABELS.get(s["status"], s["status"]),
            "error": s.get("error"),
        }
        for s in status.get("steps", [])
    ]
    state = status.get("state")
    event = "plexica.tenant.failed" if state == "failed" else "plexica.tenant.provisioned"
    sent = bool(status.get("finished"))
    steps.append(
        {
            "name": "event",
            "label": f"Event {event}",
            "status": "done" if sent else "pending",
            "status_label": "sent" if sent else "waiting",
            "error": None,
        }
    )
    undone = [s["label"] for s in steps if s["status"] == "undone"]
    failed = next((s for s in steps if s["name"] == status.get("failed_step")), None)
    return {
        **status,
        "view_steps": steps,
        "undone": undone,
        "failed_label": failed["label"] if failed else None,
        "failed_error": (failed or {}).get("error") or status.get("failure_reason"),
    }


def provisioning_routes(app: FastAPI, shell: Shell) -> None:

    @app.get("/console/provisioning/{slug}", include_in_schema=False)
    async def provisioning(request: Request, slug: str) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            live = request.headers.get(LIVE_HEADER) == "1"
            got = await shell.upstream.api(
                session, "GET", f"/v1/tenants/{quote(slug, safe='')}/provisioning"
            )
            if not got.ok or not isinstance(got.body, dict):
                if live:
                    return Response(status_code=got.failure_status)
                return shell.page(
                    request, session, "error.html", got.failure_status,
                    title="Not found", nav=console_nav(), message=got.error_message(),
                )  # fmt: skip
            status = progress_view(got.body)
            if live:
                response = shell.page(request, session, "provisioning_status.html", prog=status)
            else:
                response = shell.page(
                    request, session, "provisioning.html", title=f"Provisioning {slug}",
                    nav=console_nav(), prog=status,
                )  # fmt: skip
            if status["finished"]:
                response.headers[LIVE_HEADER] = "done"
            return response

        return await shell.run(request, show, operator=True)

    @app.post("/console/provisioning/{slug}/retry", include_in_schema=False)
    async def retry(request: Request, slug: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            page = f"/console/provisioning/{quote(slug, safe='')}"
            done = await shell.upstream.api(
                session, "POST", f"/v1/tenants/{quote(slug, safe='')}/retry",
                headers={"Prefer": "respond-async"},
            )  # fmt: skip
            if not done.ok:
                return shell.page(
                    request, session, "error.html", done.failure_status,
                    title="Retry refused", nav=console_nav(), message=done.error_message(),
                )  # fmt: skip
            return RedirectResponse(page, status_code=303)

        return await shell.run(request, act, operator=True)
