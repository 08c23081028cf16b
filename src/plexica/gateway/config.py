"""Data-plane configuration generated from the live plugin registry (ADR 0082).

Traefik (file provider) and Kong (DB-less declarative) get the same shape: ``/api/core`` to the
core, ``/api/plugins/<slug>`` to each deployed plugin with the prefix stripped, every API request
decided by the core's ``/v1/gateway/authorize`` (rate limits included), and identity headers a
client sends removed before the decision's own are set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from plexica.gateway.schemas import RATE_LIMIT_HEADERS, UPSTREAM_HEADERS

DECISION_PATH = "/v1/gateway/authorize"
UNROUTED_PATH = "/v1/gateway/unrouted"
ERRORS_PATH = "/v1/gateway/errors/{status}"
DEFAULT_UPSTREAM_TIMEOUT = 30.0
BODY_LIMIT = 1024 * 1024
# Traefik takes a backend whose /ready fails out of rotation and says so in
# `traefik_service_server_up`, which the PlexicaServiceNotReady alert reads.
READY = {"path": "/ready", "interval": "5s", "timeout": "2s"}
# Streamed uploads: bounded by the tenant's object size limit in the core, not buffered here.
UPLOAD_RULE = "PathPrefix(`/api/core/v1/files/objects/`) || Path(`/api/core/v1/files/signed`)"


# Servers that Traefik balances itself (the local topology's replicas, ADRs 0177 and 0219): each
# one's /ready every second, 3 s to answer (a busy one is not taken out for one slow answer).
REPLICA_READY = {"path": "/ready", "interval": "1s", "timeout": "3s"}
# A server whose connection failed (or that died with a request) is out for 3 s at once, not at
# the next active check: a retry then goes to another replica, never back to the dead one.
PASSIVE = {"maxFailedAttempts": 1, "failureWindow": "3s"}
# Traefik resends a request whose connection failed before the request was written, whatever
# its method (nothing reached the server), to another server.
RETRY = {"attempts": 3, "initialInterval": "50ms"}
# A read (GET, HEAD; its own router) is also resent when the server took it and died before
# answering (Traefik's own 502): sending it twice changes nothing. Writes are not: no
# idempotency key lets a service recognise a second copy (ADR 0219).
READ_RETRY = {**RETRY, "status": ["502"]}
READS = "(Method(`GET`) || Method(`HEAD`))"


# Panic routing (ADR 0227): a service is a failover from its balancer checked on /ready to the
# same servers checked on /health (liveness, no I/O, true while a server drains). When no server
# is ready (each core while PostgreSQL is down), the request still goes to a live one, which
# answers for itself (503 + Retry-After in the error shape) instead of Traefik's plain "no
# available server". Traefik makes a failover follow its children's status only when the
# failover and both children have a health check.
CHECKED, ANY = "-checked", "-any"
LIVE_PATH = "/health"


BREAKER = {
    "expression": "NetworkErrorRatio() > 0.5 || ResponseCodeRatio(500, 600, 0, 600) > 0.5",
    "checkPeriod": "100ms",
    "fallbackDuration": "3s",
    "recoveryDuration": "5s",
    "responseCode": 503,
}


def _seconds(value: float) -> str:
    return f"{value:g}s"


def traefik_config(
    core_url: str,
    plugins: Mapping[str, str],
    web_url: str | None = None,
    timeouts: Mapping[str, float] | None = None,
    *,
    core_replicas: Sequence[str] = (),
    internal_entry_point: str | None = None,
    plugin_replicas: Mapping[str, Sequence[str]] | None = None,
    live_host_suffix: str = "",
) -> dict[str, Any]:
    """``timeouts``: a plugin's upstream timeout in seconds (its manifest's
    ``api.upstream_timeout_seconds``), 30 s when absent (ADR 0137).

    ``core_replicas``: more core instances that Traefik balances itself (the local topology;
    in Kubernetes the Service does it): a replica whose ``/ready`` fails, e.g. while it drains,
    gets no new requests, and a request whose connection to a replica fails is sent to another
    (ADR 0177). The decision is then asked through ``internal_entry_point`` (a Traefik entry
    point of the caller's static settings, given as ``name=url``), so that it is balanced too.

    ``plugin_replicas``: more instances of a plugin (by slug), balanced the same way. With
    replicas, a read (GET, HEAD) that a server took and never answered is also sent to another
    (ADR 0219).

    ``live_host_suffix``: the panic fallback (ADR 0227) reaches each server under its host name
    with this suffix; in Kubernetes ``-any``, the Service that also publishes pods whose
    readiness fails (the plain Service has no endpoint when none is ready)."""
    core_url = core_url.rstrip("/")
    decision_base = core_url
    if internal_entry_point is not None:
        internal, _, decision_base = internal_entry_point.partition("=")
    timeouts = timeouts or {}
    routers: dict[str, Any] = {
        "core-api": {
            "rule": "Path(`/api/core`) || PathPrefix(`/api/core/`)",
            "service": "core-api",
            "middlewares": ["strip-identity", "auth", "edge-errors", "body-limit", "strip-core"],
        },
        "core-uploads": {
            "rule": f"({UPLOAD_RULE}) && Method(`PUT`)",
            "priority": 1000,
            "service": "core-api",
            "middlewares": ["strip-identity", "auth", "strip-core"],
        },
        # Every other /api path gets the decision's answer (404 for an unknown route); what it
        # lets through (a plugin installed a moment ago, before this file is reloaded) gets the
        # core's 404 body, not Traefik's empty 418 of noop@internal.
        "api-unknown": {
            "rule": "PathPrefix(`/api`)",
            "priority": 2,
            "service": "core-api",
            "middlewares": ["strip-identity", "auth", "unrouted"],
        },
        "realms": {"rule": "PathPrefix(`/realms/`)", "service": "core-api"},
    }
    middlewares: dict[str, Any] = {
        "strip-identity": {
            # An empty value removes the header: what the client sent never reaches a service.
            "headers": {"customRequestHeaders": dict.fromkeys(UPSTREAM_HEADERS[:-1], "")}
        },
        "auth": {
            "forwardAuth": {
                "address": decision_base.rstrip("/") + DECISION_PATH,
                "trustForwardHeader": False,
                "maxResponseBodySize": 65536,
                "authRequestHeaders": ["Authorization", "X-Trace-ID"],
                # Replaced (or removed) on the forwarded request: a client's copy never passes.
                "authResponseHeaders": [*UPSTREAM_HEADERS, *RATE_LIMIT_HEADERS],
            }
        },
        "strip-core": {"stripPrefix": {"prefixes": ["/api/core"]}},
        "unrouted": {"replacePath": {"path": UNROUTED_PATH}},
        # Traefik's own answers in the error shape (its pages are plain text). Inside the
        # decision (its JSON refusals pass untouched), and only statuses a service does not send
        # with a body of its own: the middleware replaces any body.
        # 500: Traefik's own for a chunked body it cannot read (buffering); a service's own 500
        # is a bug and already this shape.
        "edge-errors": {
            "errors": {"status": ["413", "500"], "service": "core-api", "query": ERRORS_PATH}
        },
        "plugin-errors": {
            "errors": {
                "status": ["413", "500", "502", "503", "504"],
                "service": "core-api",
                "query": ERRORS_PATH,
            }
        },
        # A plugin that fails or times out on most requests is not called for a while: callers
        # get 503 + Retry-After at once instead of each waiting for its own failure (ADR 0176).
        # Each router gets its own breaker, so one plugin's outage never opens another's. It
        # sits inside the body limit: a client's unreadable body (Traefik's own 500) or an
        # oversized one never counts against the plugin.
        "plugin-breaker": {"circuitBreaker": BREAKER},
        "body-limit": {"buffering": {"maxRequestBodyBytes": BODY_LIMIT}},
    }
    services: dict[str, Any] = {
        "core-api": {"loadBalancer": {"servers": [{"url": core_url}], "healthCheck": READY}},
    }
    plugin_replicas = plugin_replicas or {}
    if core_replicas or any(plugin_replicas.values()):
        middlewares["retry"] = {"retry": RETRY}
        middlewares["retry-reads"] = {"retry": READ_RETRY}
    if core_replicas:
        balancer = services["core-api"]["loadBalancer"]
        balancer["servers"] += [{"url": url.rstrip("/")} for url in core_replicas]
        balancer["healthCheck"] = REPLICA_READY
        balancer["passiveHealthCheck"] = PASSIVE
        _retried(routers, "core-api", before="strip-core")
        routers["realms"]["middlewares"] = []
        _retried(routers, "realms")
    if internal_entry_point is not None:
        routers["decision"] = {
            "entryPoints": [internal],
            "rule": f"Path(`{DECISION_PATH}`)",
            "service": "core-api",
            # forwardAuth asks with GET only: a decision is a read (the rate limit counts a
            # resent one twice, which a crash mid-decision may cost).
            **({"middlewares": ["retry-reads"]} if core_replicas else {}),
        }
    transports: dict[str, Any] = {}
    for slug, url in sorted(plugins.items()):
        prefix = f"/api/plugins/{slug}"
        routers[f"plugin-{slug}"] = {
            "rule": f"Path(`{prefix}`) || PathPrefix(`{prefix}/`)",
            "service": f"plugin-{slug}",
            "middlewares": [
                "strip-identity", "auth", "plugin-errors", "body-limit", "plugin-breaker",
                f"strip-plugin-{slug}",
            ],
        }  # fmt: skip
        middlewares[f"strip-plugin-{slug}"] = {"stripPrefix": {"prefixes": [prefix]}}
        more = [u.rstrip("/") for u in plugin_replicas.get(slug, ())]
        services[f"plugin-{slug}"] = {
            "loadBalancer": {
                "servers": [{"url": u} for u in (url.rstrip("/"), *more)],
                "serversTransport": f"plugin-{slug}",
                "healthCheck": REPLICA_READY if more else READY,
                **({"passiveHealthCheck": PASSIVE} if more else {}),
            }
        }
        if more:
            # Inside the breaker: it sees the answer after the retries, so one replica's death
            # does not open it for the others.
            _retried(routers, f"plugin-{slug}", before=f"strip-plugin-{slug}")
        transports[f"plugin-{slug}"] = {
            "forwardingTimeouts": {
                "responseHeaderTimeout": _seconds(timeouts.get(slug, DEFAULT_UPSTREAM_TIMEOUT))
            }
        }
    for name in [n for n in services if n == "core-api" or n.startswith("plugin-")]:
        _panic_routed(services, name, live_host_suffix)
    if web_url is not None:
        routers["web"] = {"rule": "PathPrefix(`/`)", "priority": 1, "service": "web"}
        services["web"] = {
            "loadBalancer": {"servers": [{"url": web_url.rstrip("/")}], "healthCheck": READY}
        }
    http: dict[str, Any] = {"routers": routers, "middlewares": middlewares, "services": services}
    if transports:
        http["serversTransports"] = transports
    return {"http": http}


def _panic_routed(services: dict[str, Any], name: str, host_suffix: str) -> None:
    """Make ``name`` a failover from its balancer (renamed ``name-checked``, where its
    ``/ready`` status shows) to the same servers checked for liveness only (``name-any``).
    The latter has no passive check: Traefik counts a 5xx answer as a failed attempt, and in
    panic every answer is the service's 503, which would take every server out again."""
    balancer = services[name]["loadBalancer"]
    live = {**balancer["healthCheck"], "path": LIVE_PATH}
    unchecked = {
        k: v for k, v in balancer.items() if k not in ("healthCheck", "passiveHealthCheck")
    }
    if host_suffix:
        unchecked["servers"] = [
            {**server, "url": _with_host_suffix(server["url"], host_suffix)}
            for server in balancer["servers"]
        ]
    services[name + CHECKED] = {"loadBalancer": balancer}
    services[name + ANY] = {"loadBalancer": {**unchecked, "healthCheck": live}}
    services[name] = {
        "failover": {"service": name + CHECKED, "fallback": name + ANY, "healthCheck": {}}
    }


def _with_host_suffix(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}{suffix}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


def _retried(routers: dict[str, Any], name: str, before: str | None = None) -> None:
    """Give router ``name`` the retry of any failed connection, and a twin for its reads with
    the retry of a server that died before answering; each retry sits just before ``before``
    (innermost: a retry does not ask the decision again), or alone."""
    router = routers[name]
    chain: list[str] = router["middlewares"]
    reads = {**router, "rule": f"({router['rule']}) && {READS}", "middlewares": list(chain)}
    for target, retry in ((router, "retry"), (reads, "retry-reads")):
        at = target["middlewares"].index(before) if before else len(target["middlewares"])
        target["middlewares"].insert(at, retry)
    if "priority" in router:
        reads["priority"] = router["priority"] + 1
    routers[f"{name}-reads"] = reads


def deployed(registered: list[str], urls: Mapping[str, object]) -> dict[str, str]:
    """Plugins both in the catalog and deployed at a URL: only those get a route."""
    return {slug: str(urls[slug]) for slug in registered if isinstance(urls.get(slug), str)}


# Kong's pre-function (access phase): the same forward-auth contract as Traefik's forwardAuth.
_KONG_ACCESS = """
local http = require "resty.http"
local names = {NAMES}
for _, h in ipairs(names) do kong.service.request.clear_header(h) end
local query = kong.request.get_raw_query()
local uri = kong.request.get_raw_path() .. ((query ~= "" and ("?" .. query)) or "")
local res, err = http.new():request_uri("{DECISION}", {
  method = "GET",
  headers = {
    ["Authorization"] = kong.request.get_header("authorization"),
    ["X-Trace-ID"] = kong.request.get_header("x-trace-id"),
    ["X-Forwarded-Method"] = kong.request.get_method(),
    ["X-Forwarded-Uri"] = uri,
    ["X-Forwarded-Host"] = kong.request.get_host(),
  },
})
if not res then
  kong.log.err("gateway decision unavailable: ", err)
  return kong.response.exit(503, {
    error = {code = "unavailable", message = "gateway decision unavailable", details = ngx.null},
  })
end
if res.status ~= 200 then
  local out = {["Content-Type"] = "application/json"}
  for _, h in ipairs({"Retry-After", "WWW-Authenticate", "RateLimit-Limit",
                      "RateLimit-Remaining", "RateLimit-Reset", "X-Trace-ID", "X-Request-ID"}) do
    out[h] = res.headers[h]
  end
  return kong.response.exit(res.status, res.body, out)
end
for _, h in ipairs(names) do
  local v = res.headers[h]
  if v and v ~= "" then kong.service.request.set_header(h, v) end
end
local limit = {LIMIT}
local declared = tonumber(kong.request.get_header("content-length") or "")
if limit and declared and declared > limit then
  return kong.response.exit(413, {
    error = {code = "payload_too_large",
             message = "the request body is larger than this route accepts", details = ngx.null},
  }, {["Content-Type"] = "application/json", ["X-Request-ID"] = res.headers["X-Request-ID"]})
end
"""


def kong_config(
    core_url: str,
    plugins: Mapping[str, str],
    web_url: str | None = None,
    timeouts: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Kong DB-less declarative configuration (``_format_version: "3.0"``). Kong's own error
    pages take the error shape from ``error_template_json`` in kong.conf (ADR 0137)."""
    core_url = core_url.rstrip("/")
    timeouts = timeouts or {}
    names = "{" + ", ".join(f'"{h}"' for h in UPSTREAM_HEADERS) + "}"
    access = _KONG_ACCESS.replace("{NAMES}", names).replace("{DECISION}", core_url + DECISION_PATH)

    def decision(limit: int | None) -> dict[str, Any]:
        lua = access.replace("{LIMIT}", "nil" if limit is None else str(limit))
        return {"name": "pre-function", "config": {"access": [lua.strip() + "\n"]}}

    # A declared Content-Length over the limit is refused by the decision's chunk (413 in the
    # error shape, before a byte is read); a chunked body by Kong's own plugin, whose answer
    # takes the shape from error_template_json.
    body_limit = {
        "name": "request-size-limiting",
        "config": {
            "allowed_payload_size": BODY_LIMIT,
            "size_unit": "bytes",
            "require_content_length": False,
        },
    }

    def service(
        name: str, url: str, path: str, limit: int | None = BODY_LIMIT, **route: Any
    ) -> dict[str, Any]:
        return {
            "name": name,
            "url": url.rstrip("/"),
            "routes": [
                {
                    "name": name,
                    "paths": [path],
                    "strip_path": True,
                    "preserve_host": False,
                    "protocols": ["http", "https"],
                    **route,
                    "plugins": [] if limit is None else [dict(body_limit)],
                }
            ],
            "plugins": [decision(limit)],
        }

    services = [
        service("core-api", core_url, "/api/core"),
        # Streamed uploads (UPLOAD_RULE): bounded by the tenant's object size limit in the core.
        # Their routes win over /api/core for PUT (a route with methods ranks above one without).
        *(
            service(f"core-{name}", core_url + path, "/api/core" + path, None, methods=["PUT"])
            for name, path in (("uploads", "/v1/files/objects"), ("signed", "/v1/files/signed"))
        ),
    ]
    for slug, url in sorted(plugins.items()):
        plugin = service(f"plugin-{slug}", url, f"/api/plugins/{slug}")
        # Kong's read_timeout is between two reads of the response: the wait for its start.
        plugin["read_timeout"] = int(timeouts.get(slug, DEFAULT_UPSTREAM_TIMEOUT) * 1000)
        services.append(plugin)
    realms: dict[str, Any] = {
        "name": "realms",
        "url": core_url + "/realms",
        "routes": [{"name": "realms", "paths": ["/realms"], "strip_path": True}],
    }
    services.append(realms)
    if web_url is not None:
        services.append(
            {
                "name": "web",
                "url": web_url.rstrip("/"),
                "routes": [{"name": "web", "paths": ["/"], "strip_path": False}],
            }
        )
    return {
        "_format_version": "3.0",
        "_transform": True,
        "services": services,
        # Unknown /api paths: the decision answers them (404), as Traefik's api-unknown router.
        "routes": [
            {
                "name": "api-unknown",
                "paths": ["/api"],
                "strip_path": False,
                "plugins": [
                    decision(BODY_LIMIT),
                    {"name": "request-termination", "config": {"status_code": 404}},
                ],
            }
        ],
        "plugins": [
            {
                "name": "correlation-id",
                "config": {
                    "header_name": "X-Trace-ID",
                    "generator": "uuid#counter",
                    "echo_downstream": True,
                },
            }
        ],
    }
