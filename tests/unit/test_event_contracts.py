"""Event contracts without servers: the documented types, the declared schemas, the SDK's typed
models and the publish-time check agree."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from opentelemetry import trace

from plexica.events import catalog
from plexica.events.events import CoreEvent
from plexica_sdk import tracing
from plexica_sdk.contracts import DealWon
from plexica_sdk.events import DeclaredEvents, Event, InvalidEventError, from_kafka, to_kafka
from plexica_sdk.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
CRM, BILLING = load_manifest(ROOT / "plugins" / "crm"), load_manifest(ROOT / "plugins" / "billing")


def test_docs_list_every_event_type_and_every_plugin_event_has_a_schema() -> None:
    docs = (ROOT / "docs" / "events.md").read_text()
    plugin_events = [*CRM.events.emits, *BILLING.events.emits]
    for event_type in [*CoreEvent, *(e.type for e in plugin_events)]:
        assert f"`{event_type}`" in docs, event_type
    assert all(e.data_schema for e in plugin_events)


def test_the_typed_deal_won_reads_what_the_crm_declares() -> None:
    declared = next(e for e in CRM.events.emits if e.type == DealWon.event_type).data_schema
    assert declared is not None
    assert set(declared["required"]) == set(DealWon.model_fields)
    data = {
        "deal_id": str(uuid.uuid4()),
        "amount": "120.50",
        "currency": "EUR",
        "title": "Rollout",
        "company_id": None,
        "company_name": None,
    }
    assert not list(Draft202012Validator(declared).iter_errors(data))
    won = DealWon.of(Event(source="/plugins/crm", type="crm.deal.won", data=data))
    assert str(won.amount) == "120.50"
    with pytest.raises(InvalidEventError):
        DealWon.of(Event(source="/plugins/crm", type="crm.deal.lost", data=data))
    with pytest.raises(InvalidEventError):
        DealWon.of(Event(source="/plugins/crm", type="crm.deal.won", data={**data, "amount": "x"}))


def test_publishing_checks_type_and_data_against_the_manifest() -> None:
    declared = DeclaredEvents(CRM.events.emits)
    declared.check("crm.deal.stage_changed", {"deal_id": uuid.uuid4(), "from": "a", "to": "b"})
    with pytest.raises(InvalidEventError, match="not in the manifest"):
        declared.check("crm.deal.exploded", {})
    with pytest.raises(InvalidEventError, match="declared schema") as refused:
        declared.check("crm.deal.stage_changed", {"deal_id": "not-a-uuid", "from": "a"})
    assert len(refused.value.details) == 2


def test_an_event_carries_the_active_span_as_its_parent() -> None:
    context = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        assert (
            tracing.event_traceparent("0" * 32, "r1")
            == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        )


def test_without_a_span_an_event_is_in_the_request_trace_under_a_parent_of_that_request() -> None:
    first = tracing.event_traceparent("AB" * 16, "request-1")
    assert first is not None
    version, trace_id, parent, flags = first.split("-")
    assert (version, trace_id, flags) == ("00", "ab" * 16, "00")
    assert len(parent) == 16
    assert int(parent, 16) != 0
    assert tracing.event_traceparent("ab" * 16, "request-1") == first
    assert tracing.event_traceparent("ab" * 16, "request-2") != first
    assert tracing.event_traceparent("0" * 32, "request-1") is None
    assert tracing.event_traceparent("not-a-w3c-id", "request-1") is None


def test_every_core_event_type_has_a_schema_and_bad_data_is_refused() -> None:
    assert {t for t, _ in catalog.SCHEMAS} == set(CoreEvent)
    for event_type in CoreEvent:
        version = catalog.current_version(event_type)
        assert version is not None
        document = catalog.document(event_type, version, "https://x.test/s")
        assert document is not None
        Draft202012Validator.check_schema(document)
    path = catalog.check(CoreEvent.PLUGIN_ENABLED, {"plugin_id": "crm"})
    assert path == "/v1/events/schemas/plexica.plugin.enabled/1"
    with pytest.raises(InvalidEventError, match="not a core event"):
        catalog.check("plexica.tenant.exploded", {})
    with pytest.raises(InvalidEventError, match="does not meet"):
        catalog.check(CoreEvent.USER_INVITED, {"user_id": "not-a-uuid", "roles": []})


def test_dataschema_travels_in_the_kafka_binary_mode_and_back() -> None:
    event = Event(
        source="/plugins/crm",
        type="crm.deal.won",
        dataschema="https://core.test/api/core/v1/events/schemas/crm.deal.won/1",
        data={"a": 1},
    )
    _, value, headers = to_kafka(event)
    assert ("ce_dataschema", event.dataschema.encode()) in headers  # type: ignore[union-attr]
    assert from_kafka(value, headers).dataschema == event.dataschema
