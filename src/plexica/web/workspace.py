"""The tenant's workspace: the home page with the plugins' widgets, and the plugins' pages
around their HTML fragments."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.web.plugin_forms import with_csrf
from plexica.web.session import WebSession
from plexica.web.shell import Shell, tenant_nav
from plexica.web.upstream import SessionExpiredError


async def _answer(
    shell: Shell, session: WebSession, base_path: str, path: str, query: str = ""
) -> httpx.Response | None:
    url = base_path.rstrip("/") + path + (f"?{query}" if query else "")
    try:
        answer = await shell.upstream.call(session, "GET", url)
    except httpx.HTTPError:
        return None
    if answer.status_code == 401:
        raise SessionExpiredError
    return answer


def _shown(answer: httpx.Response | None, session: WebSession) -> tuple[str | None, str | None]:
    """The plugin's HTML, or the message of an error box: a failing plugin never breaks
    the page around it."""
    if answer is None:
        return None, "The plugin did not answer."
    if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith(
        "text/html"
    ):
        return None, f"The plugin could not show this page (HTTP {answer.status_code})."
    return with_csrf(answer.text, session.csrf), None


def _download(answer: httpx.Response | None) -> Response | None:
    """A file the plugin answers as an attachment (an export) goes to the browser as it is, a
    download that is never shown as a page (ADR 0230)."""
    if answer is None or answer.status_code != 200:
        return None
    disposition = answer.headers.get("content-disposition", "")
    if disposition.split(";")[0].strip().lower() != "attachment":
        return None
    kind = answer.headers.get("content-type", "application/octet-stream")
    return Response(answer.content, media_type=kind, headers={"Content-Disposition": disposition})


async def _fragment(
    shell: Shell, session: WebSession, base_path: str, path: str, query: str = ""
) -> tuple[str | None, str | None]:
    return _shown(await _answer(shell, session, base_path, path, query), session)


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
        fragment for an htmx swap, else the fragment in the layout; a file as a download."""

        async def show(request: Request, session: WebSession) -> Response:
            nav, contributions = await tenant_nav(shell, session)
            found = [c for c in contributions if c["plugin_id"] == plugin_id]
            if not found or ".." in rest.split("/"):
                return shell.page(
                    request, session, "error.html", 404, title="Not found", nav=nav,
                    message="This page is not available in your organisation.",
                )  # fmt: skip
            answer = await _answer(
                shell, session, found[0]["base_path"], f"/ui/{rest}", request.url.query
            )
            download = _download(answer)
            if download is not None:
                return download
            html, error = _shown(answer, session)
            if request.headers.get("HX-Request") == "true":
                return shell.page(request, session, "fragment.html", html=html, error=error)
            return shell.page(
                request, session, "plugin_page.html", title=found[0]["name"], nav=nav,
                plugin=plugin_id, html=html, error=error,
            )  # fmt: skip

        return await shell.run(request, show, operator=False)
