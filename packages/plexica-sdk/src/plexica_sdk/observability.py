"""JSON logs with request context, Prometheus RED metrics and the request middleware.

Shared by the platform's services and by every plugin so that all of them log and measure alike.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import REGISTRY, Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plexica_sdk import tracing
from plexica_sdk.errors import is_unreachable, unavailable_response
from plexica_sdk.toptenants import TENANT_LATENCY, TENANT_REQUESTS, tenant_label

REQUEST_ID_HEADER = "x-request-id"
TRACE_ID_HEADER = "x-trace-id"
_REQUEST_ID_KEY, _TRACE_ID_KEY = REQUEST_ID_HEADER.encode(), TRACE_ID_HEADER.encode()
# Set by the edge's decision for the services behind it (and stripped from clients' requests).
_TENANT_SLUG_KEY = b"x-tenant-slug"
_TRACEPARENT_KEY = b"traceparent"
# The embedded gateway sets the slug here, in the scope state every mounted app shares.
TENANT_STATE_KEY = "tenant_slug"
_CHILDREN_MAX = 10_000
_SLUG_MAX = 63
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# The edge's rate-limit state of this request (ADR 0048): Traefik's forwardAuth hands the
# decision's RateLimit-* to the service, never to the client, so the service answers them back.
RATE_LIMIT_HEADERS = (b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset")
_COUNT_RE = re.compile(rb"^[0-9]{1,12}$")
HTTP_REQUESTS = Counter(
    "plexica_http_requests_total",
    "HTTP requests by service, method, route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "plexica_http_request_duration_seconds",
    "HTTP request latency by service, method and route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
HTTP_IN_FLIGHT = Gauge(
    "plexica_http_requests_in_flight", "HTTP requests being served.", ["service"]
)
HTTP_SHED = Counter(
    "plexica_http_requests_shed_total",
    "HTTP requests answered 503 at once because the process had MAX_IN_FLIGHT in flight.",
    ["service"],
)
# Requests one process serves at once (ADR 0255); past it the next is answered 503 with
# Retry-After at once, so that the accepted ones keep a bounded latency instead of every
# request queueing behind an overloaded event loop. The probes are always admitted.
MAX_IN_FLIGHT = 64
_ALWAYS_ADMITTED = frozenset({"/health", "/ready", "/metrics"})


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(value: str | None) -> str | None:
    return value if value is not None and _ID_RE.match(value) else None


def rate_limit_echo(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's ``RateLimit-*`` (set by the edge's decision) to repeat in the response:
    numbers only, each name once; anything else is dropped."""
    out: dict[bytes, bytes] = {}
    for key, value in headers:
        if key in RATE_LIMIT_HEADERS and key not in out and _COUNT_RE.match(value):
            out[key] = value
    return list(out.items())


class RequestContextMiddleware:
    """Binds request and trace ids to the log context, times the request and counts it."""

    def __init__(
        self, app: ASGIApp, service: str, max_in_flight: int | None = MAX_IN_FLIGHT
    ) -> None:
        self.app = app
        self.service = service
        self.log = structlog.get_logger("plexica.access")
        self.in_flight = HTTP_IN_FLIGHT.labels(service)
        self.shed = HTTP_SHED.labels(service)
        self.max_in_flight = max_in_flight
        self.serving = 0
        self.tracer = tracing.tracer(service) if tracing.provider(service) is not None else None
        # Label lookups are a lock and a tuple hash each: the children are kept per
        # (method, route template, status, tenant label), a bounded set.
        self._children: dict[tuple[str, str, int, str], tuple[Any, Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if "trace_id" in state:
            # Mounted behind another service of this process (the embedded gateway), which
            # already assigned ids, logs the request and adds headers: only measure here.
            await self._measure(scope, receive, send)
            return
        given_request = given_trace = given_parent = None
        for key, value in scope["headers"]:
            if key == _REQUEST_ID_KEY:
                given_request = value.decode("latin-1")
            elif key == _TRACE_ID_KEY:
                given_trace = value.decode("latin-1")
            elif key == _TRACEPARENT_KEY:
                given_parent = value.decode("latin-1")
        request_id = valid_id(given_request) or new_id()
        # A W3C traceparent wins; else an X-Trace-ID (in the W3C form it becomes the trace's id).
        parent, w3c_id = tracing.incoming(given_parent, valid_id(given_trace))
        trace_id = w3c_id or valid_id(given_trace) or new_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace_id)
        state["trace_id"] = trace_id
        state["request_id"] = request_id
        extra = [(b"x-request-id", request_id.encode()), (b"x-trace-id", trace_id.encode())]
        limits = rate_limit_echo(scope["headers"])

        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                own = message.get("headers", [])
                names = {k.lower() for k, _ in own}
                echo = [(k, v) for k, v in limits if k not in names]
                message["headers"] = [*own, *extra, *echo]
            await send(message)

        if (
            self.max_in_flight is not None
            and self.serving >= self.max_in_flight
            and scope["path"] not in _ALWAYS_ADMITTED
        ):
            # Not logged one by one: under overload that would be most of the work.
            self.shed.inc()
            overloaded = unavailable_response(
                "overloaded", "the service is at capacity; try again shortly", retry_after=1
            )
            await overloaded(scope, receive, send_wrapper)
            return
        self.serving += 1
        try:
            status, elapsed = await self._measure(
                scope, self._not_counted(receive), send_wrapper, parent=parent, trace_id=trace_id
            )
        except Exception as exc:
            # Logged here with the request's context; the client gets the error shape, never
            # a stack trace, and the server does not log the same failure a second time.
            self.log.exception("unhandled_error", path=scope["path"])
            if not started and is_unreachable(exc):
                # The database (or another server we need) is away: 503 + Retry-After.
                await unavailable_response()(scope, receive, send_wrapper)
            elif not started:
                await JSONResponse(
                    {
                        "error": {
                            "code": "internal_error",
                            "message": "internal server error",
                            "details": None,
                        }
                    },
                    status_code=500,
                )(scope, receive, send_wrapper)
            return
        finally:
            self.serving -= 1
        route = _route_template(scope)
        if route not in ("/health", "/metrics"):
            self.log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )

    def _not_counted(self, receive: Receive) -> Receive:
        """``receive`` with the time spent waiting on the client (a body sent slowly) left out
        of the requests in flight: such requests must not fill the process and get everyone
        else shed."""

        async def counted_receive() -> Message:
            self.serving -= 1
            try:
                return await receive()
            finally:
                self.serving += 1

        return counted_receive

    async def _measure(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        parent: Context | None = None,
        trace_id: str | None = None,
    ) -> tuple[int, float]:
        """``trace_id`` is set for the first service of the process to see the request: its
        span is the child of ``parent`` (a traceparent) or a root span of that trace id."""
        status = 500
        span = token = None
        if self.tracer is not None:
            if trace_id is not None:
                span = tracing.start_root(self.tracer, scope["method"], parent, trace_id)
                ids = span.get_span_context()
                structlog.contextvars.bind_contextvars(span_id=trace.format_span_id(ids.span_id))
            else:
                span = self.tracer.start_span(scope["method"], kind=trace.SpanKind.SERVER)
            token = otel_context.attach(trace.set_span_in_context(span))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        gauge = self.in_flight
        gauge.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            gauge.dec()
            elapsed = time.perf_counter() - start
            tenant = tenant_label(_tenant_slug(scope))
            key = (scope["method"], _route_template(scope), status, tenant)
            children = self._children.get(key)
            if children is None:
                if len(self._children) >= _CHILDREN_MAX:
                    self._children.clear()
                method, route, _, _ = key
                children = self._children[key] = (
                    HTTP_REQUESTS.labels(self.service, method, route, str(status)),
                    HTTP_LATENCY.labels(self.service, method, route),
                    TENANT_REQUESTS.labels(self.service, tenant, route, str(status)),
                    TENANT_LATENCY.labels(self.service, tenant),
                )
            children[0].inc()
            children[1].observe(elapsed)
            children[2].inc()
            children[3].observe(elapsed)
            if span is not None and token is not None:
                _end_span(span, key[0], key[1], status, tenant)
                otel_context.detach(token)
        return status, elapsed


def _end_span(span: trace.Span, method: str, route: str, status: int, tenant: str) -> None:
    span.update_name(f"{method} {route}")
    span.set_attributes(
        {
            "http.request.method": method,
            "http.route": route,
            "http.response.status_code": status,
            "plexica.tenant": tenant,
        }
    )
    if status >= 500:
        span.set_status(trace.StatusCode.ERROR)
    span.end()


def _tenant_slug(scope: Scope) -> str | None:
    slug = scope.get("state", {}).get(TENANT_STATE_KEY)
    if slug:
        return str(slug)
    for key, value in scope["headers"]:
        if key == _TENANT_SLUG_KEY and len(value) <= _SLUG_MAX:
            return value.decode("latin-1") or None
    return None


def _route_template(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return str(path) if path else "unmatched"


def register_collector(collector: Collector) -> None:
    """Register a scrape-time collector once per process (apps may be created more than once)."""
    with contextlib.suppress(ValueError):
        REGISTRY.register(collector)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
