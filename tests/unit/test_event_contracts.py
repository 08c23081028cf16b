"""Event contracts without servers: the documented types, the declared schemas, the SDK's typed
models and the publish-time check agree."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from opentelemetry import trace

from plexica.events.events import CoreEvent
from plexica.events.service import current_traceparent
from plexica_sdk.contracts import DealWon
from plexica_sdk.events import DeclaredEvents, Event, InvalidEventError
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


def test_a_core_event_carries_the_active_span_as_its_parent() -> None:
    context = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        assert (
            current_traceparent("0" * 32)
            == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        )
    assert current_traceparent("ab" * 16) == f"00-{'ab' * 16}-{'0' * 15}1-01"
