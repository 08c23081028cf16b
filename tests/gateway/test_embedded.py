"""The embedded gateway of ``plexica up`` applies the same decision, in process."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client import REGISTRY

from plexica.app import create_app
from plexica.gateway.embedded import create_edge_app
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica.web.app import create_web_app
from plexica_sdk import toptenants
from tests.conftest import error_of, running
from tests.gateway.conftest import Core, core_app
from tests.gateway.test_traefik import TRACE, Served, echo_plugin
from tests.support.tokens import StaticIssuers


async def test_embedded_edge_uses_the_decision(
    settings: Settings, db: Database, issuers: StaticIssuers, plugin_id: str
) -> None:
    tuned = settings.model_copy(update={"gateway_rate_limits": f"plugin:{plugin_id}=3"})
    core = core_app(tuned, db, issuers, [])
    plugin = echo_plugin(plugin_id)
    state_of(core).plugin_endpoints = {plugin_id: plugin}
    edge = create_edge_app(core, create_web_app(tuned), {plugin_id: plugin})
    async for http in running(edge):
        api = Core(core, http, issuers, base="/api/core")
        t = await api.tenant()
        await api.install(t, plugin_id)
        echo = f"/api/plugins/{plugin_id}/v1/echo"
        assert (await http.get(echo)).status_code == 401
        spoof = {"X-Tenant-ID": str(uuid.uuid4()), "X-User-ID": "root", "X-Trace-ID": TRACE}
        token = {"Authorization": f"Bearer {api.token(t, 'emb-user')}"}
        r = await http.get(echo, headers=token | spoof)
        assert r.status_code == 200, r.text
        seen = r.json()["headers"]
        assert seen["x-tenant-id"] == t["id"]
        assert seen["x-user-id"] == "emb-user"
        assert seen["x-trace-id"] == TRACE
        assert r.headers["X-Trace-ID"] == TRACE
        statuses = [(await http.get(echo, headers=token)).status_code for _ in range(3)]
        assert statuses[-1] == 429
        r = await http.get(echo, headers=token)
        assert error_of(r)["code"] == "rate_limited"
        assert r.headers["Retry-After"] == "20"
        assert (await http.get("/api/core/v1/gateway/authorize", headers=token)).status_code == 404
        assert (await http.get("/api/plugins/Nope/v1", headers=token)).status_code == 404


def counted(name: str, **labels: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_requests_are_counted_per_tenant_with_a_bounded_label(
    settings: Settings,
    db: Database,
    issuers: StaticIssuers,
    plugin_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(toptenants, "TOP", toptenants.TopTenants(1))
    tuned = settings.model_copy(update={"gateway_rate_limits": f"plugin:{plugin_id}=4"})
    core = core_app(tuned, db, issuers, [])
    plugin = echo_plugin(plugin_id)
    state_of(core).plugin_endpoints = {plugin_id: plugin}
    edge = create_edge_app(core, create_web_app(tuned), {plugin_id: plugin})
    async for http in running(edge):
        api = Core(core, http, issuers, base="/api/core")
        first, second = await api.tenant(), await api.tenant()
        for t in (first, second):
            await api.install(t, plugin_id)
        echo = f"/api/plugins/{plugin_id}/v1/echo"
        service = f"plugin-{plugin_id}"
        before = counted("plexica_tenant_requests_total", service=service, tenant="other")
        for t in (first, second):
            token = {"Authorization": f"Bearer {api.token(t, 'metrics-user')}"}
            statuses = [(await http.get(echo, headers=token)).status_code for _ in range(5)]
            assert statuses == [200] * 4 + [429]
        # The plugin counts its own requests, by the tenant the edge's decision named.
        one = {"service": service, "route": "/v1/echo", "status": "200"}
        assert counted("plexica_tenant_requests_total", tenant=first["slug"], **one) == 4
        assert counted("plexica_tenant_requests_total", tenant=second["slug"], **one) == 0
        after = counted("plexica_tenant_requests_total", service=service, tenant="other")
        assert after - before == 4
        latency = "plexica_tenant_request_duration_seconds_count"
        assert counted(latency, service=service, tenant=first["slug"]) == 4
        # The edge counts its refusals by the same label, and the requests it let through.
        assert counted("plexica_rate_limit_rejections_total", tenant=first["slug"]) == 1
        at_edge = {"service": "gateway", "tenant": first["slug"], "status": "200"}
        assert counted("plexica_tenant_requests_total", **at_edge) == 4


def test_oversized_headers_are_refused_at_the_embedded_edge(
    settings: Settings, issuers: StaticIssuers
) -> None:
    """Served by uvicorn as ``plexica up`` serves it: the server passes the headers on, the edge
    refuses them with the error shape."""
    core = create_app(settings, verifier=issuers.verifier())
    with Served(create_edge_app(core, create_web_app(settings), {})) as edge:
        fine = httpx.get(edge.url + "/api/core/v1/info", headers={"X-Padding": "a" * 8192})
        assert fine.status_code == 200, fine.text
        for path in ("/api/core/v1/info", "/api/plugins/crm/v1/x", "/"):
            r = httpx.get(edge.url + path, headers={"X-Padding": "a" * 65536})
            assert r.status_code == 431, (path, r.text)
            assert error_of(r)["code"] == "headers_too_large"
            assert r.headers["X-Trace-ID"]
