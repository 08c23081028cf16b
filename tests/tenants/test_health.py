"""Tenant health (ADR 0205): the numbers read from the services' per-tenant metrics, and the
operator route over HTTP with real tokens and the real database."""

from __future__ import annotations

import math
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.provisioning import BUCKET_PREFIX
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica.storage import repository as storage_repository
from plexica.tenants.health import quantile, services, traffic_by_tenant
from tests.conftest import error_of, running
from tests.support.tokens import StaticIssuers
from tests.tenants.conftest import new_slug
from tests.tenants.test_api import create, tenant_headers

EXPOSITION = """\
# TYPE plexica_tenant_requests_total counter
plexica_tenant_requests_total{service="plugin-crm",tenant="acme",route="/v1/a",status="200"} 90
plexica_tenant_requests_total{service="plugin-crm",tenant="acme",route="/v1/a",status="503"} 6
plexica_tenant_requests_total{service="core",tenant="acme",route="/v1/b",status="500"} 4
plexica_tenant_requests_total{service="gateway",tenant="acme",route="/api",status="200"} 100
plexica_tenant_requests_total{service="core",tenant="other",route="/v1/b",status="200"} 50
plexica_tenant_requests_total{service="core",tenant="none",route="/health",status="200"} 9
# TYPE plexica_tenant_request_duration_seconds histogram
plexica_tenant_request_duration_seconds_bucket{service="plugin-crm",tenant="acme",le="0.1"} 50
plexica_tenant_request_duration_seconds_bucket{service="plugin-crm",tenant="acme",le="0.2"} 95
plexica_tenant_request_duration_seconds_bucket{service="plugin-crm",tenant="acme",le="+Inf"} 96
plexica_tenant_request_duration_seconds_bucket{service="core",tenant="acme",le="0.1"} 4
plexica_tenant_request_duration_seconds_bucket{service="core",tenant="acme",le="0.2"} 4
plexica_tenant_request_duration_seconds_bucket{service="core",tenant="acme",le="+Inf"} 4
"""


def test_requests_errors_and_p95_per_tenant_from_the_exposition() -> None:
    families = list(text_string_to_metric_families(EXPOSITION))
    traffic = traffic_by_tenant(families)
    # `other` and `none` are nobody's; the embedded edge's count would count requests twice.
    assert set(traffic) == {"acme"}
    acme = traffic["acme"]
    assert (acme.requests, acme.errors) == (100, 10)
    # Buckets summed over services (54, 99, 100): rank 95 lies in (0.1, 0.2], linearly.
    p95 = acme.p95()
    assert p95 is not None
    assert math.isclose(p95, 0.1 + 0.1 * (95 - 54) / (99 - 54))
    assert services(families) == ["core", "plugin-crm"]


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({}, None),
        ({0.1: 0.0, math.inf: 0.0}, None),
        ({0.1: 10.0, math.inf: 10.0}, 0.095),
        ({0.1: 0.0, 0.5: 0.0, math.inf: 10.0}, 0.5),  # all slower than the largest bound
    ],
)
def test_quantile_as_prometheus_computes_it(
    buckets: dict[float, float], expected: float | None
) -> None:
    found = quantile(0.95, buckets)
    assert found == expected if expected is None else math.isclose(found or 0, expected)


async def test_operators_see_every_tenant_and_which_plugin_did_not_answer(
    settings: Settings, db: Database, issuers: StaticIssuers
) -> None:
    app = create_app(settings, db=db, verifier=issuers.verifier())
    # A plugin served elsewhere that is down: named, not waited for.
    state_of(app).plugin_endpoints = {"ghost": f"http://127.0.0.1:{free_port()}"}
    async for api in running(app):
        tenant = await create(api, issuers, new_slug())
        bucket = BUCKET_PREFIX + tenant["slug"]
        async with db.session() as session:
            await storage_repository.ensure(session, bucket, uuid.UUID(tenant["id"]))
            await storage_repository.add(session, bucket, 4096, 2)
        r = await api.get("/v1/tenant-health", headers=tenant_headers(issuers, tenant))
        assert r.status_code == 403, r.text
        assert error_of(r)["code"]
        r = await api.get("/v1/tenant-health", headers=issuers.operator_headers())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["unreachable"] == ["ghost"]
        (row,) = [t for t in body["tenants"] if t["slug"] == tenant["slug"]]
        assert row["state"] == "active"
        assert row["storage_bytes"] == 4096
        assert row["last_sign_in"] is None  # its tokens come from the test's issuer
        assert row["events_24h"] >= 0
