"""The tenant's workspace: the home page with the plugins' widgets, and the plugins' pages
around their HTML fragments."""

from __future__ import annotations

import asyncio
import re

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.plugin_forms import with_csrf
from plexica.web.session import WebSession
from plexica.web.shell import Shell, tenant_nav
from plexica.web.upstream import SessionExpiredError

# What a plugin's page may link to besides its pages: files to save, by type and extension.
DOWNLOADS = {"application/pdf": "pdf", "text/csv": "csv"}
_FILENAME = re.compile(r'filename="([^"]{1,200})"')
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


async def _get(
    shell: Shell, session: WebSession, base_path: str, path: str, query: str = ""
) -> httpx.Response | str:
    """The plugin's answer, or the message of an error box: a failing plugin never breaks
    the page around it."""
    url = base_path.rstrip("/") + path + (f"?{query}" if query else "")
    try:
        answer = await shell.upstream.call(session, "GET", url)
    except httpx.HTTPError:
        return "The plugin did not answer."
    if answer.status_code == 401:
        raise SessionExpiredError
    return answer


def _html(session: WebSession, answer: httpx.Response | str) -> tuple[str | None, str | None]:
    """The plugin's HTML with the session's CSRF field in its forms, or an error box's text."""
    if isinstance(answer, str):
        return None, answer
    if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith(
        "text/html"
    ):
        return None, f"The plugin could not show this page (HTTP {answer.status_code})."
    return with_csrf(answer.text, session.csrf), None


async def _fragment(
    shell: Shell, session: WebSession, base_path: str, path: str, query: str = ""
) -> tuple[str | None, str | None]:
    return _html(session, await _get(shell, session, base_path, path, query))


def _download(answer: httpx.Response | str) -> Response | None:
    """A file a plugin's page links to (an invoice's PDF, a CSV export), saved by the browser,
    never shown in the shell's origin: only the kinds in DOWNLOADS, always an attachment, its
    name reduced to safe characters (ADR 0229)."""
    if isinstance(answer, str) or answer.status_code != 200:
        return None
    kind = answer.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in DOWNLOADS:
        return None
    given = _FILENAME.search(answer.headers.get("content-disposition", ""))
    name = _UNSAFE.sub("_", given.group(1))[:100] if given else ""
    name = name.strip("._") or f"download.{DOWNLOADS[kind]}"
    return Response(
        answer.content,
        media_type=kind,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _tenant_name(shell: Shell, session: WebSession) -> str:
    me = await shell.upstream.api(session, "GET", "/v1/tenant")
    return str(me.body.get("name", "")) if me.ok and isinstance(me.body, dict) else ""


def workspace_routes(app: FastAPI, shell: Shell) -> None:

    @app.get("/t", include_in_schema=False)
    async def tenant_home(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            (nav, contributions), name = await asyncio.gather(
                tenant_nav(shell, session), _tenant_name(shell, session)
            )
            slots = [
                (c, slot)
                for c in contributions
                for slot in c["slots"]
                if slot["slot"] == "dashboard.widgets"
            ]
            # Widgets load side by side: the slowest plugin sets the page's time, not their sum.
            answers = await asyncio.gather(
                *(_fragment(shell, session, c["base_path"], slot["path"]) for c, slot in slots)
            )
            widgets = [
                {"title": c["name"], "html": html, "error": error}
                for (c, _), (html, error) in zip(slots, answers, strict=True)
            ]
            return shell.page(
                request, session, "tenant_home.html", title="Home", nav=nav,
                tenant_name=name, widgets=widgets,
            )  # fmt: skip

        return await shell.run(request, show, operator=False)

    @app.get("/t/p/{plugin_id}/{page_id}", include_in_schema=False)
    async def plugin_page(request: Request, plugin_id: str, page_id: str) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            nav, contributions = await tenant_nav(shell, session)
            found = [
                (c, p)
                for c in contributions
                if c["plugin_id"] == plugin_id
                for p in c["pages"]
                if p["id"] == page_id
            ]
            if not found:
                return shell.page(
                    request, session, "error.html", 404, title="Not found", nav=nav,
                    message="This page is not available in your organisation.",
                )  # fmt: skip
            c, p = found[0]
            html, error = await _fragment(
                shell, session, c["base_path"], p["path"], request.url.query
            )
            return shell.page(
                request, session, "plugin_page.html", title=p["title"], nav=nav,
                plugin=plugin_id, html=html, error=error,
            )  # fmt: skip

        return await shell.run(request, show, operator=False)

    @app.get("/t/p/{plugin_id}/ui/{rest:path}", include_in_schema=False)
    async def plugin_subpage(request: Request, plugin_id: str, rest: str) -> Response:
        """Links inside a plugin's fragments (``ui/...`` relative to its page): the bare
        fragment for an htmx swap, else the fragment in the layout; a file to download as
        it is."""

        async def show(request: Request, session: WebSession) -> Response:
            nav, contributions = await tenant_nav(shell, session)
            found = [c for c in contributions if c["plugin_id"] == plugin_id]
            if not found or ".." in rest.split("/"):
                return shell.page(
                    request, session, "error.html", 404, title="Not found", nav=nav,
                    message="This page is not available in your organisation.",
                )  # fmt: skip
            answer = await _get(
                shell, session, found[0]["base_path"], f"/ui/{rest}", request.url.query
            )
            download = _download(answer)
            if download is not None:
                return download
            html, error = _html(session, answer)
            if request.headers.get("HX-Request") == "true":
                return shell.page(request, session, "fragment.html", html=html, error=error)
            return shell.page(
                request, session, "plugin_page.html", title=found[0]["name"], nav=nav,
                plugin=plugin_id, html=html, error=error,
            )  # fmt: skip

        return await shell.run(request, show, operator=False)
