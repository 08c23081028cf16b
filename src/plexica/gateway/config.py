"""Data-plane configuration generated from the live plugin registry (ADR 0082).

Traefik (file provider) and Kong (DB-less declarative) get the same shape: ``/api/core`` to the
core, ``/api/plugins/<slug>`` to each deployed plugin with the prefix stripped, every API request
decided by the core's ``/v1/gateway/authorize`` (rate limits included), and identity headers a
client sends removed before the decision's own are set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plexica.gateway.schemas import UPSTREAM_HEADERS

DECISION_PATH = "/v1/gateway/authorize"


def traefik_config(
    core_url: str, plugins: Mapping[str, str], web_url: str | None = None
) -> dict[str, Any]:
    core_url = core_url.rstrip("/")
    routers: dict[str, Any] = {
        "core-api": {
            "rule": "Path(`/api/core`) || PathPrefix(`/api/core/`)",
            "service": "core-api",
            "middlewares": ["strip-identity", "auth", "strip-core"],
        },
        # Every other /api path gets the decision's answer (404 for an unknown route).
        "api-unknown": {
            "rule": "PathPrefix(`/api`)",
            "priority": 2,
            "service": "noop@internal",
            "middlewares": ["strip-identity", "auth"],
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
                "address": core_url + DECISION_PATH,
                "trustForwardHeader": False,
                "maxResponseBodySize": 65536,
                "authRequestHeaders": ["Authorization", "X-Trace-ID"],
                "authResponseHeaders": list(UPSTREAM_HEADERS),
            }
        },
        "strip-core": {"stripPrefix": {"prefixes": ["/api/core"]}},
    }
    services: dict[str, Any] = {
        "core-api": {"loadBalancer": {"servers": [{"url": core_url}]}},
    }
    for slug, url in sorted(plugins.items()):
        prefix = f"/api/plugins/{slug}"
        routers[f"plugin-{slug}"] = {
            "rule": f"Path(`{prefix}`) || PathPrefix(`{prefix}/`)",
            "service": f"plugin-{slug}",
            "middlewares": ["strip-identity", "auth", f"strip-plugin-{slug}"],
        }
        middlewares[f"strip-plugin-{slug}"] = {"stripPrefix": {"prefixes": [prefix]}}
        services[f"plugin-{slug}"] = {"loadBalancer": {"servers": [{"url": url.rstrip("/")}]}}
    if web_url is not None:
        routers["web"] = {"rule": "PathPrefix(`/`)", "priority": 1, "service": "web"}
        services["web"] = {"loadBalancer": {"servers": [{"url": web_url.rstrip("/")}]}}
    return {"http": {"routers": routers, "middlewares": middlewares, "services": services}}


def deployed(registered: list[str], urls: Mapping[str, object]) -> dict[str, str]:
    """Plugins both in the catalog and deployed at a URL: only those get a route."""
    return {slug: str(urls[slug]) for slug in registered if isinstance(urls.get(slug), str)}
