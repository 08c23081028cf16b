"""Forms inside plugin pages: the shell adds its CSRF token to every POST form of a fragment,
checks it when the form comes back, and forwards the fields to the plugin's own ``/ui/...``
route with the user's token. The plugin answers a redirect (shown as a page of the shell) or
the fragment again with its errors next to the fields (ADR 0097). A chosen file goes along as
a field holding its bytes in base64 (ADR 0230)."""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from plexica.web.session import WebSession
from plexica.web.shell import Shell, tenant_nav
from plexica.web.upstream import SessionExpiredError
from plexica_sdk.guard import KiB, body_limit
from plexica_sdk.ui import MAX_UPLOAD_BYTES, encode_upload

_FORM_TAG = re.compile(r"<form\b[^>]*>", re.IGNORECASE)
_POST = re.compile(r"""\bmethod\s*=\s*["']?post\b""", re.IGNORECASE)
# Statuses of a plugin's form answer that carry its fragment (errors included) to the user.
_SHOWN = frozenset({200, 201, 400, 404, 409, 422})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def with_csrf(html: str, token: str) -> str:
    """Adds the session's CSRF field to each POST form of a plugin fragment. Fragments come from
    autoescaped templates, so a ``<form`` in user data is text (``&lt;form``), never a tag."""
    field = f'<input type="hidden" name="csrf" value="{escape(token)}">'

    def add(match: re.Match[str]) -> str:
        tag = match.group(0)
        return tag + field if _POST.search(tag) else tag

    return _FORM_TAG.sub(add, html)


def shell_target(plugin_id: str, pages: list[dict[str, Any]], location: str) -> str | None:
    """Where the user goes after a plugin's redirect: only a relative ``ui/...`` of the plugin,
    shown as the plugin's page when it is one (``/t/p/<plugin>/<page>``)."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc or not parts.path.startswith("ui/"):
        return None
    if ".." in parts.path.split("/") or "\\" in location:
        return None
    page = next((p["id"] for p in pages if p["path"] == "/" + parts.path), None)
    path = f"/t/p/{plugin_id}/{page}" if page else f"/t/p/{plugin_id}/{parts.path}"
    return (
        path
        + (f"?{parts.query}" if parts.query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def plugin_form_routes(app: FastAPI, shell: Shell) -> None:

    @app.post("/t/p/{plugin_id}/ui/{rest:path}", include_in_schema=False)
    @body_limit(MAX_UPLOAD_BYTES + 64 * KiB)
    async def plugin_form(request: Request, plugin_id: str, rest: str) -> Response:
        async def submit(request: Request, session: WebSession) -> Response:
            nav, contributions = await tenant_nav(shell, session)
            found = [c for c in contributions if c["plugin_id"] == plugin_id]

            def page(status: int, html: str | None, error: str | None) -> Response:
                return shell.page(
                    request, session, "plugin_page.html", status, nav=nav, plugin=plugin_id,
                    title=found[0]["name"] if found else "Not found", html=html, error=error,
                )  # fmt: skip

            if not found or ".." in rest.split("/"):
                return page(404, None, "This page is not available in your organisation.")
            fields: dict[str, list[str]] = {}
            for key, value in (await request.form()).multi_items():
                if key == "csrf":
                    continue
                if isinstance(value, UploadFile):  # bounded by the route's body limit
                    fields.setdefault(key, []).append(encode_upload(await value.read()))
                else:
                    fields.setdefault(key, []).append(value)
            url = found[0]["base_path"].rstrip("/") + f"/ui/{rest}"
            if request.url.query:
                url += f"?{request.url.query}"
            try:
                answer = await shell.upstream.call(session, "POST", url, data=fields)
            except httpx.HTTPError:
                return page(502, None, "The plugin did not answer.")
            if answer.status_code == 401:
                raise SessionExpiredError
            if answer.status_code in _REDIRECTS:
                target = shell_target(
                    plugin_id, found[0]["pages"], answer.headers.get("location", "")
                )
                if target is None:
                    return page(502, None, "The plugin sent the form somewhere else.")
                return RedirectResponse(target, status_code=303)
            if answer.status_code == 403:
                return page(403, None, "You are not allowed to do this in this plugin.")
            html_answer = answer.headers.get("content-type", "").startswith("text/html")
            if answer.status_code in _SHOWN and html_answer:
                return page(answer.status_code, with_csrf(answer.text, session.csrf), None)
            refused = f"The plugin could not take this form (HTTP {answer.status_code})."
            return page(502, None, refused)

        return await shell.run(request, submit, operator=False)
