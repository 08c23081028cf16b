"""The forward-auth decision endpoint (Traefik's ``forwardAuth``, Kong's pre-function)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from plexica.gateway.sync import Registry, database_registry
from plexica.kit.db import request_db
from plexica.kit.state import configured, core_state
from plexica_sdk.errors import NotFoundError, error_response

router = APIRouter(prefix="/v1/gateway", tags=["gateway"])


@router.get(
    "/authorize",
    # The data plane's contract, not the API's: the edge never routes /v1/gateway (ADR 0139).
    include_in_schema=False,
    summary="Decide on a request at the edge",
    description="Reads X-Forwarded-Method/-Uri/-Host and Authorization. 200 carries the headers "
    "to pass upstream (X-Tenant-ID, X-User-ID, X-User-Roles, X-Trace-ID); 400/401/403/404/429 "
    "carry the error body for the client.",
)
async def authorize(request: Request) -> Response:
    gateway = configured(core_state(request).gateway, "the gateway decision is not running")
    h = request.headers
    verdict = await gateway.authorize(
        h.get("x-forwarded-method", "GET"),
        h.get("x-forwarded-uri", "/"),
        h.get("x-forwarded-host"),
        h.get("authorization"),
        getattr(request.state, "trace_id", None) or h.get("x-trace-id"),
    )
    # The request middleware already answers with X-Trace-ID (the same id).
    headers = {k: v for k, v in verdict.headers.items() if k != "X-Trace-ID"}
    if verdict.error is None:
        return Response(status_code=200, headers=headers)
    e = verdict.error
    return error_response(e.status, e.code, e.message, e.details, headers)


@router.get("/routes", include_in_schema=False)
async def routes(request: Request) -> dict[str, object]:
    """What the routes watcher beside a data plane renders (ADR 0213): the plugins to route and
    their upstream timeouts. The watcher asks here, so the gateway holds no database login."""
    registry: Registry = database_registry(request_db(request))
    plugins, timeouts = await registry()
    return {"plugins": plugins, "timeouts": timeouts}


@router.api_route(
    "/unrouted",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def unrouted() -> Response:
    """Where a data plane sends an allowed request it has no route for yet (a plugin installed
    a moment ago, before the proxy reloaded its configuration): the body of an unknown route."""
    raise NotFoundError("no such route")


# The answers a data plane gives for its own failures (Traefik's `errors` middleware asks here).
EDGE_ERRORS = {
    413: ("payload_too_large", "the request body is larger than this route accepts"),
    500: ("internal_error", "the request could not be served"),
    502: ("bad_gateway", "the service behind this route is not reachable"),
    503: ("unavailable", "the service behind this route is unavailable"),
    504: ("upstream_timeout", "the service behind this route did not answer in time"),
}


@router.api_route(
    "/errors/{status}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def edge_error(status: int) -> Response:
    """The error body of a status the proxy produced itself (ADR 0137)."""
    code, message = EDGE_ERRORS.get(status, ("bad_gateway", "the edge could not serve this"))
    # 503 is the plugin's breaker open (ADR 0176): come back once it tries the plugin again.
    headers = {"Retry-After": "3"} if status == 503 else None
    return error_response(status if status in EDGE_ERRORS else 502, code, message, headers=headers)
