"""What every page area of the web shell shares (ADR 0090): the session, CSRF check and layout
(``Shell``), sign-out and the navigation of each console."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from plexica.identity.names import OPERATOR_REALM
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica.web.branding import Brand
from plexica.web.hosts import TenantHosts
from plexica.web.security import origin_of
from plexica.web.session import (
    HOST_PREFIX,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Signer,
    WebSession,
    session_key,
)
from plexica.web.store import MAX_LIFETIME, SessionStore
from plexica.web.upstream import (
    REFRESH_MARGIN,
    ApiResult,
    SessionExpiredError,
    Upstream,
)
from plexica_sdk.errors import error_response
from plexica_sdk.ui import DESIGN_TEMPLATES

HERE = Path(__file__).parent
STATIC = "/static"
TENANT_ACTIONS = {"active": ("suspend", "delete"), "suspended": ("reactivate", "delete")}
CATALOG_ACTIONS = {"registered": ("publish",), "published": ("deprecate",)}
PLUGIN_ACTIONS = {"active": ("disable",), "disabled": ("enable",)}
ROLE_LABELS = {"tenant_admin": "Administrator", "member": "Member"}

# The post-logout redirect comes back to the callback registered with the provider (both the
# built-in one and Keycloak accept only registered URIs), marked by this state.
SIGNED_OUT = "signed-out"
SUPPORT_ENDED = "Support session ended."
SUPPORT_OVER = "Your support session has ended: it expired, or the tenant withdrew support access."
WEB_POOL_SIZE = 4

Handler = Callable[[Request, WebSession], Awaitable[Response]]


@dataclass(frozen=True)
class PageState:
    """How a page is drawn again after a form: the answer's status, the form as it was sent,
    its errors per field and a refusal that names no field."""

    status: int = 200
    form: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def refused(
        cls, done: ApiResult, errors: dict[str, str], form: dict[str, Any] | None = None
    ) -> PageState:
        """The API's refusal of ``form``: its ``errors`` per field, else its message."""
        return cls(done.status, form, errors, None if errors else done.error_message())

    @classmethod
    def on_field(cls, done: ApiResult, name: str) -> PageState:
        """The API's refusal, shown at the field (or row) ``name``."""
        return cls(done.status, errors={name: done.error_message()})


# A page as first shown, not after a form.
FRESH = PageState()
NO_SUCH_ACTION = PageState(404, error="No such action.")
# A page drawn again after a form, in its ``PageState``.
PageFn = Callable[[Request, WebSession, PageState], Awaitable[Response]]


class Shell:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None) -> None:
        self.settings = settings
        # The scheme is the public URL's (the app trusts no X-Forwarded-Proto): https means
        # Secure, host-only cookies (ADR 0122).
        self.secure = settings.public_base_url.startswith("https://")
        prefix = HOST_PREFIX if self.secure else ""
        self.session_cookie = prefix + SESSION_COOKIE
        self.login_cookie = prefix + LOGIN_COOKIE
        key = session_key(settings)
        self.signer = Signer(key)
        if settings.database_url is None:
            raise ValueError("the web shell keeps its sessions in the database: set "
                             "PLEXICA_DATABASE_URL")  # fmt: skip
        self.db = Database(
            settings.sqlalchemy_url, pool_size=WEB_POOL_SIZE,
            statement_timeout_ms=settings.database_statement_timeout_ms,
        )  # fmt: skip
        self.sessions = SessionStore(self.db, key)
        self.upstream = Upstream(
            settings.public_base_url,
            transport,
            issuer_url=settings.issuer_base_url,
            idp_url=settings.keycloak_base_url,
        )
        self.hosts = TenantHosts(settings, self.upstream.http, "plexica-")
        self.templates = Jinja2Templates(
            env=Environment(
                loader=ChoiceLoader(
                    [FileSystemLoader(HERE / "templates"), FileSystemLoader(DESIGN_TEMPLATES)]
                ),
                autoescape=select_autoescape(default=True, default_for_string=True),
            )
        )
        self.templates.env.globals.update(
            static=STATIC,
            htmx=(HERE / "static" / "vendor" / "htmx.min.js").is_file(),
            actions_for=lambda state: TENANT_ACTIONS.get(str(state), ()),
            catalog_actions=lambda status: CATALOG_ACTIONS.get(str(status), ()),
            plugin_actions=lambda status: PLUGIN_ACTIONS.get(str(status), ()),
        )

    async def branding(self, session: WebSession) -> Brand:
        got = await self.upstream.api(session, "GET", "/v1/tenant/branding")
        return Brand.of(got.body if got.ok else None)

    # --- session ---------------------------------------------------------------------------

    async def read(self, request: Request) -> WebSession | None:
        return await self.sessions.load(request.cookies.get(self.session_cookie))

    async def start(self, request: Request, response: Response, session: WebSession) -> None:
        """Stores a signed-in session and gives the browser its opaque id."""
        client = request.client.host if request.client else ""
        raw = await self.sessions.create(
            session, user_agent=request.headers.get("user-agent", ""), ip=client
        )
        response.set_cookie(
            self.session_cookie, raw, max_age=MAX_LIFETIME, httponly=True,
            samesite="lax", secure=self.secure, path="/",
        )  # fmt: skip

    def forget(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    async def end_sessions(
        self,
        realm: str,
        subject: str | None = None,
        session_id: UUID | None = None,
        keep: UUID | None = None,
    ) -> int:
        """The one place where sessions end (sign-out, the sessions page, a tenant admin, a
        password change: all but ``keep``): the rows go, so their cookies open nothing from the
        next request on; then each one's sign-in session ends at the provider (its logout
        endpoint, back channel, with the refresh token): the built-in provider stops the refresh
        tokens and refuses the access tokens of that ``sid`` everywhere (ADR 0115), Keycloak
        ends its session."""
        ended = await self.sessions.delete(realm, subject, session_id, keep)
        await asyncio.gather(*(self.upstream.end_session(s) for s in ended))
        return len(ended)

    def own_origins(self, request: Request) -> set[str]:
        """The origins of the shell's pages: the public URL's and, on a tenant's host, that
        host's (its scheme and port are the public URL's)."""
        own = {origin_of(self.settings.public_base_url)}
        label = self.hosts.label_of(request)
        tenant_url = self.settings.tenant_web_url(label) if label else None
        if tenant_url:
            own.add(origin_of(tenant_url))
        return {o for o in own if o}

    def form_targets(self) -> str:
        """Where the shell's forms may lead beside itself: the public URL (sign-in from a
        tenant's host) and the identity provider."""
        urls = (self.settings.public_base_url, self.settings.issuer_base_url)
        return " ".join(sorted({o for o in map(origin_of, urls) if o}))

    def refuse_cross_site(self, request: Request, reason: str) -> Response:
        message = "This request did not come from this site's own pages, so it was refused."
        if "application/json" in request.headers.get("accept", "") and "text/html" not in (
            request.headers.get("accept", "")
        ):
            return error_response(403, "cross_site_request", message, {"reason": reason})
        return self.page(request, None, "error.html", 403, title="Refused", message=message)

    def to_login(self, request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        self.forget(response)
        return response

    def page(
        self, request: Request, session: WebSession | None, name: str, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        who = None
        if session is not None:
            claims = session.claims()
            who = claims.get("email") or claims.get("preferred_username") or claims.get("sub")
        context = {
            "who": who,
            "support": session.support() if session is not None else None,
            "profile": session is not None and session.realm != OPERATOR_REALM,
            "csrf": session.csrf if session else "",
            "nav": ctx.pop("nav", None),
            "current": request.url.path,
            "brand": getattr(request.state, "brand", None),
            "host_tenant": getattr(request.state, "host_slug", None),
            "csp_nonce": getattr(request.state, "csp_nonce", ""),
            **ctx,
        }
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def form_page(
        self,
        request: Request,
        session: WebSession,
        name: str,
        state: PageState,
        loaded: ApiResult | None = None,
        /,
        **ctx: Any,
    ) -> HTMLResponse:
        """``page`` in ``state``, with the notice of a redirect; without an error of its own,
        the failure of the call that ``loaded`` the page's data."""
        failed = None if loaded is None or loaded.ok else loaded.error_message()
        return self.page(
            request, session, name, state.status, errors=state.errors,
            error=state.error or failed, notice=request.query_params.get("notice"), **ctx,
        )  # fmt: skip

    async def run(self, request: Request, handler: Handler, *, operator: bool | None) -> Response:
        """Runs ``handler`` with a live session: refreshes the tokens when they are about to
        expire, checks the CSRF token of a POST and sends the user to sign in when the session
        is gone."""
        session = await self.read(request)
        host_slug = getattr(request.state, "host_slug", None)
        if session is None or (host_slug and session.realm != f"plexica-{host_slug}"):
            return self.to_login(request)
        if operator is not None and (session.realm == OPERATOR_REALM) != operator:
            return self.page(
                request, session, "error.html", 403, title="Not here",
                message="This page is not part of your console.",
            )  # fmt: skip
        support = session.support() is not None
        try:
            if _due(session):
                if support:  # never renewed: it ends (ADR 0240)
                    return await self.support_over(request, session)
                renewed = await self.sessions.refresh(session, _due, self.upstream.refresh)
                if renewed is None:
                    return self.to_login(request)  # ended by another request meanwhile
                session = renewed
            if request.method == "POST":
                form = await request.form()
                token = form.get("csrf")
                if not session.csrf_ok(token if isinstance(token, str) else None):
                    return self.page(
                        request, session, "error.html", 403, title="Form expired",
                        message="The form was refused (missing or invalid CSRF token). "
                        "Reload the page and try again.",
                    )  # fmt: skip
            if session.realm != OPERATOR_REALM:
                request.state.brand = await self.branding(session)
            response = await handler(request, session)
        except SessionExpiredError:
            if support:
                return await self.support_over(request, session)
            return self.to_login(request)
        return response

    def page_route(self, app: FastAPI, path: str, page: Handler, *, operator: bool | None) -> None:
        """A GET route that shows ``page`` with the live session (``run``)."""

        async def show(request: Request) -> Response:
            return await self.run(request, page, operator=operator)

        app.add_api_route(path, show, methods=["GET"], include_in_schema=False)

    async def support_over(self, request: Request, session: WebSession) -> Response:
        """A support session that expired or was refused: gone, with a message at sign-in."""
        await self.end_sessions(session.realm, session.subject, session.id)
        response = RedirectResponse(f"/login?{urlencode({'error': SUPPORT_OVER})}", 303)
        self.forget(response)
        return response


def _due(session: WebSession) -> bool:
    return session.expires_at - REFRESH_MARGIN < time.time()


async def sign_out(shell: Shell, request: Request, session: WebSession) -> Response:
    """Ends this browser's session, then sends it to the provider's end-session endpoint, which
    comes back to the sign-in page."""
    assert session.id is not None
    await shell.end_sessions(session.realm, session.subject, session.id)
    callback = shell.hosts.callback(getattr(request.state, "host_slug", None))
    response = RedirectResponse(
        shell.upstream.end_session_url(session, SIGNED_OUT, callback), status_code=303
    )
    shell.forget(response)
    return response


def notice_redirect(path: str, notice: str) -> RedirectResponse:
    """Post/redirect/get: the page at ``path`` shows ``notice`` once."""
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


async def redirect_or_page(
    request: Request,
    session: WebSession,
    done: ApiResult,
    page: PageFn,
    *,
    to: str,
    notice: str,
    form: dict[str, str] | None = None,
) -> Response:
    """After a form's API call: to ``to`` with ``notice``, or ``page`` again with the refusal
    (and the ``form`` as it was sent)."""
    if not done.ok:
        return await page(
            request, session, PageState(done.status, form, error=done.error_message())
        )
    return notice_redirect(to, notice)


async def save_or_page(
    request: Request,
    session: WebSession,
    page: PageFn,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    save: Callable[[], Awaitable[ApiResult]],
    to: str,
    notice: str,
) -> Response:
    """A form checked here (``errors``), then saved by the API when nothing was wrong: to ``to``
    with ``notice``, or ``page`` again with the form and its field errors (422), or with the
    API's refusal when it names no field."""
    if not errors:
        done = await save()
        if done.ok:
            return notice_redirect(to, notice)
        errors = done.field_errors()
        if not errors:
            return await page(request, session, PageState.refused(done, errors, form))
    return await page(request, session, PageState(422, form, errors))


async def form_fields(request: Request, names: Iterable[str]) -> dict[str, str]:
    """The named fields of the posted form, trimmed; a missing one is empty."""
    raw = await request.form()
    return {k: str(raw.get(k, "")).strip() for k in names}


def _nav_section(title: str, links: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A titled group of the navigation, from its links' (title, href) pairs."""
    return {"title": title, "links": [{"title": t, "href": href} for t, href in links]}


def console_nav() -> list[dict[str, Any]]:
    links = [
        ("Tenants", "/console/tenants"),
        ("Plugin catalog", "/console/plugins"),
        ("Feature flags", "/console/flags"),
        ("Audit log", "/console/audit"),
        ("Health", "/console/health"),
        ("Tenant health", "/console/tenant-health"),
    ]
    return [_nav_section("Operator console", links)]


async def tenant_nav(
    shell: Shell, session: WebSession
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ui = await shell.upstream.api(session, "GET", "/v1/tenant/ui")
    contributions: list[dict[str, Any]] = ui.list_body()
    nav = [_nav_section("Workspace", [("Home", "/t")])]
    for c in contributions:
        pages = [
            (p["title"], f"/t/p/{c['plugin_id']}/{p['id']}")
            for p in c["pages"]
            if p.get("navigation", True)
        ]
        if pages:
            nav.append(_nav_section(c["name"], pages))
    if "tenant_admin" in session.roles():
        admin = [
            ("Plugins", "/t/admin/plugins"),
            ("Users", "/t/admin/users"),
            ("Branding", "/t/admin/branding"),
            ("Support access", "/t/admin/support"),
            ("Audit log", "/t/admin/audit"),
        ]
        nav.append(_nav_section("Administration", admin))
    return nav, contributions
