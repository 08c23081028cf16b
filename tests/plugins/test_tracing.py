"""One trace per request (ADR 0201): a deal won through the embedded edge, exported over
OTLP/HTTP to a real receiver, shows the edge, the core, the CRM with its PostgreSQL statements
and the outbox, and Billing's event consumer, all under the client's traceparent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from plexica.app import create_app
from plexica.events.runtime import plugin_event_buses
from plexica.gateway.embedded import create_edge_app
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.plugins.gate import InstallationGate
from plexica.plugins.service import HttpReadinessProbe
from plexica.settings import Settings
from plexica.web.app import create_web_app
from plexica_billing.app import create_app as create_billing_app
from plexica_billing.app import plugin_root as billing_root
from plexica_crm.app import create_app as create_crm_app
from plexica_sdk import tracing
from plexica_sdk.app import PluginConfig
from plexica_sdk.manifest import Manifest
from tests.conftest import running
from tests.plugins.conftest import TenantFactory, register_dir
from tests.support.otlp import Receiver, otlp_receiver
from tests.support.tokens import StaticIssuers

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with otlp_receiver() as (endpoint, received):
        # Forget providers an earlier test's background work made for its own receiver (seen
        # exporting to a closed port): this test's spans must go to this receiver.
        tracing.shutdown()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        # Installing two plugins makes thousands of statement spans in the core: on a busy CPU
        # the default queue (2,048) fills faster than it is exported and drops the later spans.
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100000")
        try:
            yield received
        finally:
            tracing.shutdown()


async def test_one_request_is_one_trace_from_the_edge_to_the_event_consumer(
    receiver: Receiver,
    settings: Settings,
    db: Database,
    database_url: str,
    issuers: StaticIssuers,
    crm_manifest: Manifest,
    make_tenant: TenantFactory,
) -> None:
    await register_dir(db, billing_root())
    config = PluginConfig(database_url=database_url, verifier=issuers.verifier())
    plugins = {"crm": create_crm_app(config), "billing": create_billing_app(config)}
    core = create_app(
        settings, db=db, verifier=issuers.verifier(), event_buses=plugin_event_buses(plugins)
    )
    state_of(core).plugin_endpoints = dict(plugins)
    state_of(core).plugin_probe = HttpReadinessProbe(dict(plugins), timeout=1.0)
    edge = create_edge_app(core, create_web_app(settings), plugins, InstallationGate(core))
    tenant = await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    async for http in running(edge):
        for plugin in ("crm", "billing"):
            r = await http.post(
                f"{CORE}/tenants/{tenant.id}/plugins", json={"plugin_id": plugin}, headers=admin
            )
            assert r.status_code == 201, r.text
        company = (
            await http.post(f"{CRM}/companies", json={"name": "Umbrella"}, headers=admin)
        ).json()
        deal = (
            await http.post(
                f"{CRM}/deals",
                json={"title": "Umbrella pilot", "amount": "4200.00", "company_id": company["id"]},
                headers=admin,
            )
        ).json()
        traced = admin | {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
        with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
            r = await http.post(
                f"{CRM}/deals/{deal['id']}/stage", json={"stage_id": "won"}, headers=traced
            )
        assert r.status_code == 200, r.text
        assert r.headers["X-Trace-ID"] == TRACE_ID

        route = "POST /v1/deals/{deal_id}/stage"
        spans = await receiver.wait(
            TRACE_ID, {route, "gateway decision", "consume crm.deal.won"}, frozenset({"gateway"})
        )

    by_id = {s.span_id: s for s in spans}
    server, client, consumer_kind = 2, 3, 5
    (edge_span,) = [s for s in spans if s.service == "gateway"]
    assert (edge_span.parent_id, edge_span.kind) == (CLIENT_SPAN, server)
    (decision,) = [s for s in spans if s.name == "gateway decision"]
    assert (decision.service, decision.parent_id) == ("core", edge_span.span_id)
    (crm_span,) = [s for s in spans if s.name == route]
    assert (crm_span.service, crm_span.parent_id) == ("plugin-crm", edge_span.span_id)
    assert crm_span.attributes["plexica.tenant"] != "none"
    statements = [s for s in spans if s.parent_id == crm_span.span_id and s.kind == client]
    assert {"SELECT", "UPDATE"} <= {s.name for s in statements}, "no PostgreSQL spans"
    # The event went into the outbox by the platform's publish function, in the same trace.
    assert any("_publish" in s.attributes.get("db.statement", "") for s in statements)
    (consumer,) = [s for s in spans if s.name == "consume crm.deal.won"]
    assert consumer.kind == consumer_kind
    assert consumer.service == "plugin-billing"
    # The event's traceparent names the CRM span that published it.
    assert by_id[consumer.parent_id] is crm_span
    # The request's log lines carry the trace and the span.
    lines = [e for e in logs if e.get("trace_id") == TRACE_ID]
    assert lines
    assert any(e.get("span_id") == edge_span.span_id for e in lines)
