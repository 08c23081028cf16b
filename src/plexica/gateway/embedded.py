"""The in-process gateway of ``plexica up``: one port, routes to the core, plugins and web."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plexica import __version__
from plexica.gateway.schemas import UPSTREAM_HEADERS
from plexica.kit.http1 import MAX_HEADER_BYTES
from plexica.kit.state import state_of
from plexica_sdk import tracing
from plexica_sdk.errors import error_response
from plexica_sdk.observability import TENANT_STATE_KEY
from plexica_sdk.service import create_service_app

if TYPE_CHECKING:
    import httpx

CORE_PREFIX = "/api/core"
PLUGINS_PREFIX = "/api/plugins/"
REALMS_PREFIX = "/realms"
DEFAULT_UPSTREAM_TIMEOUT = 30.0


class _AtRoot:
    """Gives the core ``/realms/...`` at its own root: OIDC issuers live at ``<public>/realms``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if root.endswith(self.prefix):
            scope = dict(scope, root_path=root[: -len(self.prefix)])
        await self.app(scope, receive, send)


_STRIPPED = frozenset(h.lower().encode() for h in UPSTREAM_HEADERS)


class _Guarded:
    """Asks the core's gateway (the same ``authorize`` Traefik reaches by forward auth) about
    every request, replaces client-sent identity headers with the verdict's, or answers the
    refusal itself."""

    def __init__(self, app: ASGIApp, core: FastAPI) -> None:
        self.app = app
        self.core = core
        self.tracer = tracing.tracer("core")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gateway = state_of(self.core).gateway
        if gateway is None:
            await error_response(503, "unavailable", "the gateway is starting")(
                scope, receive, send
            )
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        uri = raw.decode("latin-1")
        if scope.get("query_string"):
            uri += "?" + scope["query_string"].decode("latin-1")
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        state = scope.get("state", {})
        with self.tracer.start_as_current_span("gateway decision"):
            verdict = await gateway.authorize(
                scope["method"],
                uri,
                headers.get("host"),
                headers.get("authorization"),
                state.get("trace_id") or headers.get("x-trace-id"),
            )
        if verdict.error is not None:
            e = verdict.error
            out = {k: v for k, v in verdict.headers.items() if k != "X-Trace-ID"}
            await error_response(e.status, e.code, e.message, e.details, out)(scope, receive, send)
            return
        kept = [
            (k, v)
            for k, v in scope["headers"]
            if k not in _STRIPPED and not k.startswith(b"x-forwarded-")
        ]
        kept += [
            (k.lower().encode(), v.encode("latin-1"))
            for k, v in verdict.headers.items()
            if k in UPSTREAM_HEADERS and v
        ]
        if "state" in scope:
            # For the request metrics of the outer service (it never sees ``kept``).
            scope["state"][TENANT_STATE_KEY] = verdict.headers.get("X-Tenant-Slug")
        await self.app(dict(scope, headers=kept), receive, send)


class _HeaderLimit:
    """Refuses requests whose target and headers exceed ``limit`` bytes with 431 and the error
    shape, before any route or decision reads them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])  # ": " and CRLF
            if size > self.limit:
                response = error_response(
                    431, "headers_too_large", f"request headers exceed {self.limit} bytes"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class PluginGate(Protocol):
    async def allows(self, slug: str, path: str, scope: Scope) -> bool:
        """Whether the request may reach plugin ``slug`` (its tenant has it active)."""
        ...


_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"host", b"content-length"}
)
# httpx hands the body decoded: its content-encoding no longer applies.
_NOT_RETURNED = _HOP_BY_HOP | {b"content-encoding"}
MAX_PROXIED_BODY = 10 * 1024 * 1024


class _Proxy:
    """Forwards a request to a plugin served by another process on this machine (the dev
    loop's, ADR 0134), headers as the gateway left them."""

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None

    async def __call__(
        self, base: str, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30.0)
        too_large = error_response(
            413, "payload_too_large", f"the request body exceeds {MAX_PROXIED_BODY} bytes"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > MAX_PROXIED_BODY:
            await too_large(scope, receive, send)  # before a byte of it is read
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_PROXIED_BODY:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        url = f"{base}/{rest}" + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        try:
            answer = await self._http.request(scope["method"], url, headers=headers, content=body)
        except httpx.TimeoutException:
            # The same answer as a mounted plugin's or Traefik's (ADR 0137).
            await error_response(504, "upstream_timeout", "the plugin did not answer in time")(
                scope, receive, send
            )
            return
        except httpx.HTTPError:
            await error_response(502, "bad_gateway", "the plugin did not answer")(
                scope, receive, send
            )
            return
        out = [(k, v) for k, v in answer.headers.raw if k.lower() not in _NOT_RETURNED]
        out.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": answer.content})


class _PluginDispatch:
    """Routes ``/api/plugins/<slug>/...`` to the plugin mounted under that slug (or, for a slug
    not mounted, to the process ``remote`` names), for tenants the gate lets through; others get
    the answer of an unknown route."""

    def __init__(
        self,
        plugins: Mapping[str, ASGIApp],
        gate: PluginGate | None,
        remote: Callable[[str], str | None] | None = None,
    ) -> None:
        self.plugins = plugins
        self.gate = gate
        self.remote = remote
        self.proxy = _Proxy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette keeps the full path in a mounted scope and the mount point in root_path.
        slug, _, rest = get_route_path(scope).lstrip("/").partition("/")
        app = self.plugins.get(slug)
        elsewhere = self.remote(slug) if app is None and self.remote and slug else None
        if (
            elsewhere is not None
            and scope["type"] == "http"
            and (self.gate is None or await self.gate.allows(slug, "/" + rest, scope))
        ):
            await self.proxy(elsewhere, rest, scope, receive, send)
            return
        gated = app is not None and scope["type"] == "http" and self.gate is not None
        if gated and self.gate is not None and not await self.gate.allows(slug, "/" + rest, scope):
            app = None
        if app is None:
            response = error_response(404, "not_found", "no such route")
            await response(scope, receive, send)
            return
        scope = dict(scope, root_path=scope["root_path"] + "/" + slug)
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        await _within(upstream_timeout(app), app, scope, receive, send)


def upstream_timeout(app: ASGIApp) -> float:
    """The plugin manifest's ``api.upstream_timeout_seconds``, else the default (30 s)."""
    runtime = getattr(getattr(app, "state", None), "plugin", None)
    manifest = getattr(runtime, "manifest", None)
    if manifest is None:
        return DEFAULT_UPSTREAM_TIMEOUT
    return float(manifest.api.upstream_timeout_seconds)


async def _within(seconds: float, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app``; a response that has not started after ``seconds`` is answered 504, as a
    proxy's response-header timeout would (a started response is left to finish)."""
    started = False

    async def watch(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            deadline.reschedule(None)
        await send(message)

    try:
        async with asyncio.timeout(seconds) as deadline:
            await app(scope, receive, watch)
    except TimeoutError:
        if started:
            raise
        response = error_response(
            504, "upstream_timeout", f"the plugin did not answer within {seconds:g} s"
        )
        await response(scope, receive, send)


def create_edge_app(
    core: FastAPI,
    web: FastAPI,
    plugins: Mapping[str, FastAPI],
    gate: PluginGate | None = None,
    remote: Callable[[str], str | None] | None = None,
) -> FastAPI:
    """Health, readiness and metrics of the edge are those of the core it fronts. Every
    ``/api/core`` and ``/api/plugins`` request passes the core's gateway decision (ADR 0080);
    ``gate`` is an extra check of the plugin dispatch; ``remote`` names the URL of a plugin
    served by another process (``plexica plugin dev``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for app in (core, web, *plugins.values()):
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    edge = create_service_app(
        "gateway",
        title="Plexica",
        version=__version__,
        readiness=core.state.readiness,
        lifespan=lifespan,
        # Each service behind it bounds and checks its own bodies, route by route (ADR 0135).
        body_limit=None,
        inspect_bodies=False,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    # Inside the request-context middleware, so a refusal is logged with its trace id.
    edge.user_middleware.append(Middleware(_HeaderLimit))
    edge.mount(CORE_PREFIX, _Guarded(core, core))
    edge.mount(REALMS_PREFIX, _AtRoot(core, REALMS_PREFIX))
    edge.mount(PLUGINS_PREFIX.rstrip("/"), _Guarded(_PluginDispatch(plugins, gate, remote), core))
    edge.mount("/", web)
    return edge
