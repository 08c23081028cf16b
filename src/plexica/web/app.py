"""The web shell: server-rendered pages for operators, tenant admins and members (ADR 0090)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID

import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from plexica import __version__
from plexica.identity.client import pkce_pair
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica.web.branding import Brand
from plexica.web.console_flags import console_flags_routes
from plexica.web.health import health_row
from plexica.web.hosts import TenantHosts
from plexica.web.invites import invite_routes
from plexica.web.plugin_forms import plugin_form_routes, with_csrf
from plexica.web.provisioning import provisioning_routes
from plexica.web.security import ShellSecurity, origin_of
from plexica.web.session import (
    HOST_PREFIX,
    LOGIN_COOKIE,
    LOGIN_MAX_AGE,
    SESSION_COOKIE,
    Signer,
    WebSession,
    session_key,
)
from plexica.web.sessions_page import sessions_routes
from plexica.web.store import SessionStore
from plexica.web.upstream import (
    OPERATOR_REALM,
    REFRESH_MARGIN,
    SessionExpiredError,
    Upstream,
)
from plexica_sdk.errors import error_response
from plexica_sdk.service import create_service_app
from plexica_sdk.ui import DESIGN_TEMPLATES

HERE = Path(__file__).parent
STATIC = "/static"
SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
TENANT_STATES = ("provisioning", "active", "suspended", "pending_deletion", "deleted", "failed")
TENANT_ACTIONS = {"active": ("suspend", "delete"), "suspended": ("reactivate", "delete")}
CONFIRM_TEXT = {
    "suspend": "Its users will be unable to sign in or call the API until it is reactivated.",
    "reactivate": "Its users will be able to sign in again.",
    "delete": "The tenant will be deleted after the retention window; its users lose access now.",
}
SETTING_TYPES = {"string": "text", "integer": "number", "number": "number", "boolean": "checkbox"}
CATALOG_ACTIONS = {"registered": ("publish",), "published": ("deprecate",)}
PLUGIN_ACTIONS = {"active": ("disable",), "disabled": ("enable",)}
# The server's error codes that belong to one field of the tenant form.
TENANT_FIELD_CODES = {
    "invalid_slug": "slug",
    "tenant_exists": "slug",
    "invalid_email": "admin_email",
}

# The post-logout redirect comes back to the callback registered with the provider (both the
# built-in one and Keycloak accept only registered URIs), marked by this state.
SIGNED_OUT = "signed-out"
SIGNED_OUT_TEXT = "You are signed out."
WEB_POOL_SIZE = 4

NextDep = Annotated[str, Query(alias="next", max_length=2000)]
Handler = Callable[[Request, WebSession], Awaitable[Response]]


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
        self.upstream = Upstream(settings.public_base_url, transport)
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
            self.session_cookie, raw, max_age=self.sessions.lifetime, httponly=True,
            samesite="lax", secure=self.secure, path="/",
        )  # fmt: skip

    def forget(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    async def end_sessions(
        self, realm: str, subject: str | None = None, session_id: UUID | None = None
    ) -> int:
        """The one place where sessions end (sign-out, the sessions page, a tenant admin): the
        rows go, so their cookies open nothing from the next request on; then each one's sign-in
        session ends at the provider (its logout endpoint, back channel, with the refresh token):
        the built-in provider stops the refresh tokens and refuses the access tokens of that
        ``sid`` everywhere (ADR 0115), Keycloak ends its session."""
        ended = await self.sessions.delete(realm, subject, session_id)
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
        try:
            if _due(session):
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
            return self.to_login(request)
        return response


def _due(session: WebSession) -> bool:
    return session.expires_at - REFRESH_MARGIN < time.time()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


async def _listing(
    shell: Shell,
    request: Request,
    session: WebSession,
    nav: list[dict[str, Any]],
    *,
    title: str,
    path: str,
    columns: list[tuple[str, str]],
    empty: str,
) -> Response:
    """A read-only table of what a core list route returns (a list or a page of ``items``)."""
    got = await shell.upstream.api(session, "GET", path)
    items: list[Any] = []
    if got.ok:
        items = got.body.get("items", []) if isinstance(got.body, dict) else got.body
    rows = [
        [_cell(item.get(key)) for key, _ in columns] for item in items if isinstance(item, dict)
    ]
    return shell.page(
        request, session, "listing.html", title=title, nav=nav, rows=rows,
        headers=[h for _, h in columns], empty=empty,
        error=None if got.ok else got.error_message(),
    )  # fmt: skip


def _settings_fields(schema: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Form fields for the flat, simple-typed properties of a plugin's settings schema."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    fields = []
    for name, prop in props.items():
        if not isinstance(prop, dict) or prop.get("type") not in SETTING_TYPES:
            continue
        value = values.get(name, prop.get("default"))
        fields.append(
            {
                "name": name,
                "label": str(prop.get("title") or name.replace("_", " ").capitalize()),
                "type": prop["type"],
                "input": SETTING_TYPES[prop["type"]],
                "value": "" if value is None else value,
                "hint": prop.get("description"),
                "enum": prop.get("enum"),
            }
        )
    return fields


def _coerce_settings(
    fields: list[dict[str, Any]], form: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        name, raw = f["name"], form.get(f["name"], "").strip()
        if f["type"] == "boolean":
            out[name] = raw == "on"
        elif raw == "":
            continue
        elif f["type"] in ("integer", "number"):
            try:
                out[name] = int(raw) if f["type"] == "integer" else float(raw)
            except ValueError:
                errors[name] = (
                    "Enter a number." if f["type"] == "number" else "Enter a whole number."
                )
        else:
            out[name] = raw
    return out, errors


async def _installed_fields(
    shell: Shell, session: WebSession, plugin_id: str
) -> tuple[str, list[dict[str, Any]]] | None:
    """The installation's API path and its settings form fields, or None when not installed."""
    tenant_id = await _tenant_id_of(shell, session)
    pid = quote(plugin_id, safe="")
    path = f"/v1/tenants/{tenant_id}/plugins/{pid}"
    got = await shell.upstream.api(session, "GET", path)
    versions = await shell.upstream.api(session, "GET", f"/v1/plugins/{pid}/versions")
    if not got.ok or not versions.ok or not isinstance(versions.body, list):
        return None
    manifest: dict[str, Any] = next(
        (v["manifest"] for v in versions.body if v["version"] == got.body["version"]), {}
    )
    return path, _settings_fields(manifest.get("settings_schema", {}), got.body["settings"])


def _check_rows(body: Any) -> list[tuple[str, dict[str, str]]]:
    checks = body.get("checks", {}) if isinstance(body, dict) else {}
    rows: list[tuple[str, dict[str, str]]] = []
    for name, check in sorted(checks.items()):
        if isinstance(check, dict):
            status = str(check.get("status", "unknown"))
            detail = ", ".join(f"{k}: {v}" for k, v in check.items() if k != "status")
        else:
            status, detail = str(check), ""
        rows.append((name, {"status": status, "detail": detail}))
    return rows


def _safe_next(target: str | None) -> str:
    """Only paths of this site: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def create_web_app(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    # Imported here: the tenant admin routes take the Shell type from this module.
    from plexica.web.tenant_admin import (
        register_host_tenant,
        register_tenant_admin,
    )

    shell = Shell(settings, transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await shell.upstream.aclose()
        await shell.db.dispose()

    app = create_service_app(
        "web",
        title="Plexica web",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.shell = shell
    # No page without the sessions table: the database is what "ready" means here too.
    app.state.readiness.add("database", shell.db.ping)
    app.mount(STATIC, StaticFiles(directory=str(HERE / "static")), name="static")
    register_host_tenant(app, shell)
    # Outermost: refused requests reach no route, and every answer gets the headers.
    app.add_middleware(
        ShellSecurity, own_origins=shell.own_origins, refuse=shell.refuse_cross_site,
        form_targets=shell.form_targets(),
    )  # fmt: skip
    _auth_routes(app, shell)
    _console_routes(app, shell)
    _catalog_routes(app, shell)
    _tenant_routes(app, shell)
    register_tenant_admin(app, shell, _tenant_nav)
    _plugin_settings_routes(app, shell)
    _audit_routes(app, shell)
    provisioning_routes(app, shell)
    console_flags_routes(app, shell)
    plugin_form_routes(app, shell)
    sessions_routes(app, shell)
    invite_routes(app, shell)
    return app


def _auth_routes(app: FastAPI, shell: Shell) -> None:

    # --- sign-in -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        session = await shell.read(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if session.realm == OPERATOR_REALM:
            return RedirectResponse("/console/tenants", status_code=303)
        return RedirectResponse("/t", status_code=303)

    @app.get("/login", include_in_schema=False)
    async def login(
        request: Request, back: NextDep = "/", error: str | None = None, notice: str = ""
    ) -> Response:
        host_slug = getattr(request.state, "host_slug", None)
        if host_slug and not error and not notice:
            # The host names the tenant: straight to its realm's sign-in.
            return RedirectResponse(
                f"/login/start?{urlencode({'next': _safe_next(back)})}", status_code=303
            )
        return shell.page(
            request, None, "login.html", title="Sign in", next=_safe_next(back),
            tenant="", tenant_error=None, error=error,
            notice=SIGNED_OUT_TEXT if notice == SIGNED_OUT_TEXT else None,
        )  # fmt: skip

    @app.get("/login/start", include_in_schema=False)
    async def login_start(
        request: Request, tenant: str = "", operator: str = "", back: NextDep = "/"
    ) -> Response:
        target = _safe_next(back)
        host_slug = getattr(request.state, "host_slug", None)
        if host_slug:
            realm = f"plexica-{host_slug}"
        elif operator:
            realm = OPERATOR_REALM
        else:
            slug = tenant.strip().lower()
            if not SLUG_RE.match(slug):
                return shell.page(
                    request, None, "login.html", 422, title="Sign in", next=target, tenant=tenant,
                    tenant_error="Enter the slug: lowercase letters, digits and dashes.",
                    error=None,
                )  # fmt: skip
            realm = f"plexica-{slug}"
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        callback = shell.hosts.callback(host_slug)
        response = RedirectResponse(
            shell.upstream.authorize_url(realm, state, challenge, callback), status_code=303
        )
        pending = {
            "realm": realm, "state": state, "verifier": verifier, "next": target,
            "callback": callback,
        }  # fmt: skip
        response.set_cookie(
            shell.login_cookie, shell.signer.dumps(pending), max_age=LOGIN_MAX_AGE,
            httponly=True, samesite="lax", secure=shell.secure, path="/",
        )  # fmt: skip
        return response

    @app.get("/auth/callback", include_in_schema=False)
    async def callback(
        request: Request, code: str = "", state: str = "", error: str = ""
    ) -> Response:
        if state == SIGNED_OUT and not code:
            # Back from the provider's end-session endpoint (its post-logout redirect).
            return RedirectResponse(f"/login?{urlencode({'notice': SIGNED_OUT_TEXT})}", 303)
        pending = shell.signer.loads(request.cookies.get(shell.login_cookie), LOGIN_MAX_AGE)
        if (
            error
            or not code
            or pending is None
            or not secrets.compare_digest(state, str(pending.get("state", "")))
        ):
            message = "Sign-in was cancelled or has expired. Please try again."
            return RedirectResponse(f"/login?{urlencode({'error': message})}", status_code=303)
        try:
            session = await shell.upstream.exchange(
                str(pending["realm"]), code, str(pending["verifier"]), pending.get("callback")
            )
        except SessionExpiredError:
            message = "The identity provider refused the sign-in. Please try again."
            return RedirectResponse(f"/login?{urlencode({'error': message})}", status_code=303)
        response = RedirectResponse(_safe_next(str(pending.get("next", "/"))), status_code=303)
        response.delete_cookie(shell.login_cookie, path="/", secure=shell.secure)
        await shell.start(request, response, session)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        return await shell.run(request, partial(sign_out, shell), operator=None)


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


def _console_nav() -> list[dict[str, Any]]:
    return [
        {
            "title": "Operator console",
            "links": [
                {"title": "Tenants", "href": "/console/tenants"},
                {"title": "Plugin catalog", "href": "/console/plugins"},
                {"title": "Feature flags", "href": "/console/flags"},
                {"title": "Audit log", "href": "/console/audit"},
                {"title": "Health", "href": "/console/health"},
                {"title": "Tenant health", "href": "/console/tenant-health"},
            ],
        }
    ]


def _console_routes(app: FastAPI, shell: Shell) -> None:

    async def tenants_page(
        request: Request,
        session: WebSession,
        *,
        status: int = 200,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        error: str | None = None,
        notice: str | None = None,
    ) -> Response:
        state = request.query_params.get("state", "")
        after = request.query_params.get("after", "")[:63]
        params = {"state": state} if state in TENANT_STATES else {}
        if after:
            params["after"] = after
        listed = await shell.upstream.api(session, "GET", "/v1/tenants", params=params)
        tenants = listed.body.get("items", []) if listed.ok else []
        following = listed.body.get("next") if listed.ok else None
        next_url = None
        if following:
            next_url = "/console/tenants?" + urlencode({**params, "after": following})
        return shell.page(
            request, session, "tenants.html", status, title="Tenants", nav=_console_nav(),
            tenants=tenants, states=TENANT_STATES, state=state, after=after, next_url=next_url,
            form=form or {"slug": "", "name": "", "admin_email": ""}, errors=errors or {},
            error=error or (None if listed.ok else listed.error_message()),
            notice=notice or request.query_params.get("notice"),
        )  # fmt: skip

    @app.get("/console/tenants", include_in_schema=False)
    async def console_tenants(request: Request) -> Response:
        return await shell.run(request, tenants_page, operator=True)

    @app.post("/console/tenants", include_in_schema=False)
    async def console_create(request: Request) -> Response:
        async def create(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            form = {k: str(raw.get(k, "")).strip() for k in ("slug", "name", "admin_email")}
            made = await shell.upstream.api(
                session, "POST", "/v1/tenants", json=form, headers={"Prefer": "respond-async"}
            )
            if made.status == 202:
                return RedirectResponse(f"/console/provisioning/{quote(form['slug'])}", 303)
            if made.ok:
                notice = f"Tenant {form['slug']} created."
                return RedirectResponse(
                    f"/console/tenants?{urlencode({'notice': notice})}", status_code=303
                )
            errors = made.field_errors()
            code = made.body.get("error", {}).get("code") if isinstance(made.body, dict) else None
            if code in TENANT_FIELD_CODES:
                errors[TENANT_FIELD_CODES[str(code)]] = made.error_message()
            return await tenants_page(
                request, session, status=made.status if made.status < 500 else 502, form=form,
                errors=errors, error=None if errors else made.error_message(),
            )  # fmt: skip

        return await shell.run(request, create, operator=True)

    @app.get("/console/tenants/{slug}", include_in_schema=False)
    async def console_tenant(request: Request, slug: str) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            path = f"/v1/tenants/{quote(slug, safe='')}"
            tenant, steps = await asyncio.gather(
                shell.upstream.api(session, "GET", path),
                shell.upstream.api(session, "GET", f"{path}/steps"),
            )
            if not tenant.ok:
                return shell.page(
                    request, session, "error.html", tenant.status, title="Not found",
                    nav=_console_nav(), message=tenant.error_message(),
                )  # fmt: skip
            return shell.page(
                request, session, "tenant_detail.html", title=slug, nav=_console_nav(),
                tenant=tenant.body, steps=steps.body if steps.ok else {"steps": [], "history": []},
                error=None if steps.ok else steps.error_message(),
            )  # fmt: skip

        return await shell.run(request, show, operator=True)

    @app.get("/console/tenants/{slug}/{action}", include_in_schema=False)
    async def console_confirm(request: Request, slug: str, action: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            if action not in CONFIRM_TEXT:
                return shell.page(
                    request, session, "error.html", 404, title="Not found",
                    message="No such action.", nav=_console_nav(),
                )  # fmt: skip
            return shell.page(
                request, session, "confirm.html", title=f"{action} {slug}", nav=_console_nav(),
                heading=f"{action.capitalize()} tenant {slug}?", warning=CONFIRM_TEXT[action],
                action_url=f"/console/tenants/{quote(slug, safe='')}/{action}",
                confirm_label=f"Yes, {action}", danger=action == "delete",
                cancel_url="/console/tenants",
            )  # fmt: skip

        return await shell.run(request, confirm, operator=True)

    @app.post("/console/tenants/{slug}/{action}", include_in_schema=False)
    async def console_act(request: Request, slug: str, action: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            if action not in CONFIRM_TEXT:
                return shell.page(
                    request, session, "error.html", 404, title="Not found",
                    message="No such action.", nav=_console_nav(),
                )  # fmt: skip
            path = f"/v1/tenants/{quote(slug, safe='')}"
            if action == "delete":
                done = await shell.upstream.api(session, "DELETE", path)
            else:
                done = await shell.upstream.api(session, "POST", f"{path}/{action}")
            if not done.ok:
                return await tenants_page(
                    request, session, status=done.status, error=done.error_message()
                )
            notice = f"Tenant {slug}: {action} done."
            return RedirectResponse(
                f"/console/tenants?{urlencode({'notice': notice})}", status_code=303
            )

        return await shell.run(request, act, operator=True)


def _catalog_routes(app: FastAPI, shell: Shell) -> None:
    async def catalog_page(
        request: Request, session: WebSession, *, status: int = 200, error: str | None = None
    ) -> Response:
        listed = await shell.upstream.api(session, "GET", "/v1/plugins")
        versions = listed.body if listed.ok and isinstance(listed.body, list) else []
        return shell.page(
            request, session, "catalog.html", status, title="Plugin catalog", nav=_console_nav(),
            versions=versions, notice=request.query_params.get("notice"),
            error=error or (None if listed.ok else listed.error_message()),
        )  # fmt: skip

    @app.get("/console/plugins", include_in_schema=False)
    async def console_plugins(request: Request) -> Response:
        return await shell.run(request, catalog_page, operator=True)

    @app.post("/console/plugins/{plugin_id}/{version}/{action}", include_in_schema=False)
    async def console_plugin_action(
        request: Request, plugin_id: str, version: str, action: str
    ) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            if action not in ("publish", "deprecate"):
                return await catalog_page(request, session, status=404, error="No such action.")
            path = f"/v1/plugins/{quote(plugin_id, safe='')}/versions/{quote(version, safe='')}"
            done = await shell.upstream.api(session, "POST", f"{path}/{action}")
            if not done.ok:
                return await catalog_page(
                    request, session, status=done.status, error=done.error_message()
                )
            notice = f"{plugin_id} {version}: {action} done."
            return RedirectResponse(f"/console/plugins?{urlencode({'notice': notice})}", 303)

        return await shell.run(request, act, operator=True)

    @app.get("/console/audit", include_in_schema=False)
    async def console_audit(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            return await _listing(
                shell, request, session, _console_nav(), title="Audit log",
                path="/v1/audit?limit=100", empty="No entries.",
                columns=[("at", "When"), ("actor", "Actor"), ("action", "Action"),
                         ("tenant_id", "Tenant"), ("target", "Target")],
            )  # fmt: skip

        return await shell.run(request, show, operator=True)

    @app.get("/console/health", include_in_schema=False)
    async def console_health(request: Request) -> Response:
        async def health(request: Request, session: WebSession) -> Response:
            ready = await shell.upstream.ready(session)
            return shell.page(
                request, session, "health.html", title="Health", nav=_console_nav(),
                ready=ready.ok, checks=_check_rows(ready.body),
            )  # fmt: skip

        return await shell.run(request, health, operator=True)

    @app.get("/console/tenant-health", include_in_schema=False)
    async def console_tenant_health(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            found = await shell.upstream.api(session, "GET", "/v1/tenant-health")
            body = found.body if found.ok and isinstance(found.body, dict) else {}
            return shell.page(
                request, session, "tenant_health.html", title="Tenant health",
                nav=_console_nav(), rows=[health_row(t) for t in body.get("tenants", [])],
                sources=body.get("sources", []), unreachable=body.get("unreachable", []),
                error=None if found.ok else found.error_message(),
            )  # fmt: skip

        return await shell.run(request, show, operator=True)


async def _tenant_nav(
    shell: Shell, session: WebSession
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ui = await shell.upstream.api(session, "GET", "/v1/tenant/ui")
    contributions: list[dict[str, Any]] = ui.body if ui.ok and isinstance(ui.body, list) else []
    nav: list[dict[str, Any]] = [{"title": "Workspace", "links": [{"title": "Home", "href": "/t"}]}]
    for c in contributions:
        links = [
            {"title": p["title"], "href": f"/t/p/{c['plugin_id']}/{p['id']}"}
            for p in c["pages"]
            if p.get("navigation", True)
        ]
        if links:
            nav.append({"title": c["name"], "links": links})
    if "tenant_admin" in session.roles():
        nav.append(
            {
                "title": "Administration",
                "links": [
                    {"title": "Plugins", "href": "/t/admin/plugins"},
                    {"title": "Users", "href": "/t/admin/users"},
                    {"title": "Branding", "href": "/t/admin/branding"},
                    {"title": "Audit log", "href": "/t/admin/audit"},
                ],
            }
        )
    return nav, contributions


async def _fragment(
    shell: Shell, session: WebSession, base_path: str, path: str, query: str = ""
) -> tuple[str | None, str | None]:
    """The plugin's HTML, or the message of an error box: a failing plugin never breaks
    the page around it."""
    url = base_path.rstrip("/") + path + (f"?{query}" if query else "")
    try:
        answer = await shell.upstream.call(session, "GET", url)
    except httpx.HTTPError:
        return None, "The plugin did not answer."
    if answer.status_code == 401:
        raise SessionExpiredError
    if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith(
        "text/html"
    ):
        return None, f"The plugin could not show this page (HTTP {answer.status_code})."
    return with_csrf(answer.text, session.csrf), None


async def _tenant_name(shell: Shell, session: WebSession) -> str:
    me = await shell.upstream.api(session, "GET", "/v1/tenant")
    return str(me.body.get("name", "")) if me.ok and isinstance(me.body, dict) else ""


async def _tenant_id_of(shell: Shell, session: WebSession) -> str | None:
    me = await shell.upstream.api(session, "GET", "/v1/tenant")
    return str(me.body["id"]) if me.ok and isinstance(me.body, dict) else None


async def _plugins_admin(
    shell: Shell,
    request: Request,
    session: WebSession,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    form_plugin: str = "",
) -> Response:
    nav, _ = await _tenant_nav(shell, session)
    me = await shell.upstream.api(session, "GET", "/v1/tenant")
    tenant_id = me.body.get("id") if me.ok and isinstance(me.body, dict) else None
    installed: list[dict[str, Any]] = []
    if tenant_id:
        listed = await shell.upstream.api(session, "GET", f"/v1/tenants/{tenant_id}/plugins")
        if listed.ok and isinstance(listed.body, list):
            installed = listed.body
        elif error is None:
            error = listed.error_message()
    return shell.page(
        request, session, "plugins.html", status, title="Plugins", nav=nav,
        installed=installed, errors=errors or {}, error=error, form_plugin=form_plugin,
        notice=request.query_params.get("notice"),
    )  # fmt: skip


def _tenant_routes(app: FastAPI, shell: Shell) -> None:

    @app.get("/t", include_in_schema=False)
    async def tenant_home(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            (nav, contributions), name = await asyncio.gather(
                _tenant_nav(shell, session), _tenant_name(shell, session)
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
            nav, contributions = await _tenant_nav(shell, session)
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
        fragment for an htmx swap, else the fragment in the layout."""

        async def show(request: Request, session: WebSession) -> Response:
            nav, contributions = await _tenant_nav(shell, session)
            found = [c for c in contributions if c["plugin_id"] == plugin_id]
            if not found or ".." in rest.split("/"):
                return shell.page(
                    request, session, "error.html", 404, title="Not found", nav=nav,
                    message="This page is not available in your organisation.",
                )  # fmt: skip
            html, error = await _fragment(
                shell, session, found[0]["base_path"], f"/ui/{rest}", request.url.query
            )
            if request.headers.get("HX-Request") == "true":
                return shell.page(request, session, "fragment.html", html=html, error=error)
            return shell.page(
                request, session, "plugin_page.html", title=found[0]["name"], nav=nav,
                plugin=plugin_id, html=html, error=error,
            )  # fmt: skip

        return await shell.run(request, show, operator=False)


def _plugin_settings_routes(app: FastAPI, shell: Shell) -> None:
    async def plugin_settings_page(
        request: Request,
        session: WebSession,
        plugin_id: str,
        *,
        status: int = 200,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        error: str | None = None,
    ) -> Response:
        nav, _ = await _tenant_nav(shell, session)
        found = await _installed_fields(shell, session, plugin_id)
        if found is None:
            return shell.page(
                request, session, "error.html", 404, title="Not found", nav=nav,
                message="This plugin is not installed in your organisation.",
            )  # fmt: skip
        fields = found[1]
        if form is not None:
            for f in fields:
                f["value"] = form.get(f["name"], "")
        return shell.page(
            request, session, "plugin_settings.html", status, title=f"{plugin_id} settings",
            nav=nav, plugin=plugin_id, fields=fields, errors=errors or {}, error=error,
            notice=request.query_params.get("notice"),
        )  # fmt: skip

    @app.get("/t/admin/plugins/{plugin_id}/settings", include_in_schema=False)
    async def admin_plugin_settings(request: Request, plugin_id: str) -> Response:
        return await shell.run(
            request, partial(plugin_settings_page, plugin_id=plugin_id), operator=False
        )

    @app.post("/t/admin/plugins/{plugin_id}/settings", include_in_schema=False)
    async def admin_plugin_settings_save(request: Request, plugin_id: str) -> Response:
        async def save(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            form = {k: str(v) for k, v in raw.items() if k != "csrf"}
            found = await _installed_fields(shell, session, plugin_id)
            if found is None:
                return await plugin_settings_page(request, session, plugin_id)
            path, fields = found
            values, errors = _coerce_settings(fields, form)
            if not errors:
                done = await shell.upstream.api(
                    session, "PUT", f"{path}/settings", json={"settings": values}
                )
                if done.ok:
                    notice = urlencode({"notice": "Settings saved."})
                    return RedirectResponse(f"{request.url.path}?{notice}", 303)
                errors = done.field_errors()
                if not errors:
                    return await plugin_settings_page(
                        request, session, plugin_id, status=done.status, form=form,
                        error=done.error_message(),
                    )  # fmt: skip
            return await plugin_settings_page(
                request, session, plugin_id, status=422, form=form, errors=errors
            )

        return await shell.run(request, save, operator=False)


def _audit_routes(app: FastAPI, shell: Shell) -> None:
    @app.get("/t/admin/audit", include_in_schema=False)
    async def admin_audit(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            nav, _ = await _tenant_nav(shell, session)
            return await _listing(
                shell, request, session, nav, title="Audit log", path="/v1/audit?limit=100",
                empty="No entries.",
                columns=[("at", "When"), ("actor", "Actor"), ("action", "Action"),
                         ("target", "Target")],
            )  # fmt: skip

        return await shell.run(request, show, operator=False)

    @app.get("/t/admin/plugins", include_in_schema=False)
    async def admin_plugins(request: Request) -> Response:
        return await shell.run(request, partial(_plugins_admin, shell), operator=False)

    @app.post("/t/admin/plugins", include_in_schema=False)
    async def admin_install(request: Request) -> Response:
        async def install(request: Request, session: WebSession) -> Response:
            raw = await request.form()
            plugin = str(raw.get("plugin_id", "")).strip()
            version = str(raw.get("version", "")).strip() or None
            if not plugin:
                return await _plugins_admin(
                    shell, request, session, status=422, errors={"plugin_id": "Enter a plugin id."}
                )
            tenant_id = await _tenant_id_of(shell, session)
            done = await shell.upstream.api(
                session, "POST", f"/v1/tenants/{tenant_id}/plugins",
                json={"plugin_id": plugin, "version": version},
            )  # fmt: skip
            if not done.ok:
                return await _plugins_admin(shell,
                    request, session, status=done.status, form_plugin=plugin,
                    errors={"plugin_id": done.error_message()},
                )  # fmt: skip
            notice = f"Plugin {plugin} installed."
            return RedirectResponse(f"/t/admin/plugins?{urlencode({'notice': notice})}", 303)

        return await shell.run(request, install, operator=False)

    @app.get("/t/admin/plugins/{plugin_id}/uninstall", include_in_schema=False)
    async def admin_uninstall_confirm(request: Request, plugin_id: str) -> Response:
        async def confirm(request: Request, session: WebSession) -> Response:
            nav, _ = await _tenant_nav(shell, session)
            return shell.page(
                request, session, "confirm.html", title=f"Uninstall {plugin_id}", nav=nav,
                heading=f"Uninstall {plugin_id}?",
                warning="Its pages disappear now; its data is kept for the retention window.",
                action_url=f"/t/admin/plugins/{quote(plugin_id, safe='')}/uninstall",
                confirm_label="Yes, uninstall", danger=True, cancel_url="/t/admin/plugins",
            )  # fmt: skip

        return await shell.run(request, confirm, operator=False)

    @app.post("/t/admin/plugins/{plugin_id}/{action}", include_in_schema=False)
    async def admin_plugin_action(request: Request, plugin_id: str, action: str) -> Response:
        async def act(request: Request, session: WebSession) -> Response:
            if action not in ("enable", "disable", "uninstall"):
                return await _plugins_admin(
                    shell, request, session, status=404, error="No such action."
                )
            tenant_id = await _tenant_id_of(shell, session)
            path = f"/v1/tenants/{tenant_id}/plugins/{quote(plugin_id, safe='')}"
            if action == "uninstall":
                done = await shell.upstream.api(session, "DELETE", path)
            else:
                done = await shell.upstream.api(session, "POST", f"{path}/{action}")
            if not done.ok:
                return await _plugins_admin(
                    shell, request, session, status=done.status, error=done.error_message()
                )
            notice = f"Plugin {plugin_id}: {action} done."
            return RedirectResponse(f"/t/admin/plugins?{urlencode({'notice': notice})}", 303)

        return await shell.run(request, act, operator=False)
