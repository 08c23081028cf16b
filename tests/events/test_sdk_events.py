"""The SDK side: validation at publish, the binary-mode codec, and no platform imports."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid

import pytest
from pydantic import BaseModel

from plexica_sdk.events import (
    MAX_EVENT_BYTES,
    Event,
    EventBus,
    InvalidEventError,
    from_kafka,
    to_kafka,
)


class DealWon(BaseModel):
    deal_id: str
    amount: int


def _bus() -> EventBus:
    bus = EventBus("crm")
    bus.emits("crm.deal.won", DealWon)
    bus.emits("crm.deal.noted")
    return bus


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        ("crm.deal.won", {"deal_id": "d"}, "does not match DealWon"),
        ("crm.deal.lost", {}, "not declared"),
        ("crm.deal.noted", {"x": math.nan}, "not JSON"),
        ("crm.deal.noted", {"x": object()}, "not JSON"),
        ("crm.deal.noted", {"x": "a\x00b"}, "NUL"),
        ("crm.deal.noted", {"x": "y" * MAX_EVENT_BYTES}, "the limit is"),
    ],
)
def test_malformed_payloads_are_refused_with_a_clear_error(
    event_type: str, data: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidEventError, match=message) as err:
        _bus().build(event_type, data, tenant_id=uuid.uuid4())
    assert err.value.code == "invalid_event"
    assert err.value.status == 422


def test_a_plugin_cannot_declare_events_outside_its_namespace() -> None:
    bus = EventBus("crm")
    with pytest.raises(ValueError, match="namespace"):
        bus.emits("plexica.tenant.deleted")
    with pytest.raises(ValueError, match="event type"):
        bus.subscribe("Crm.Deal")
    with pytest.raises(ValueError, match="plugin id"):
        EventBus("Not-A-Plugin")


def test_binary_mode_round_trip() -> None:
    event = _bus().build(
        "crm.deal.won", DealWon(deal_id="d", amount=3), tenant_id=uuid.uuid4(), subject="d"
    )
    key, value, headers = to_kafka(event)
    assert key == str(event.tenant_id).encode()
    back = from_kafka(value, headers)
    assert back == event


def test_records_that_are_not_cloudevents_are_refused() -> None:
    with pytest.raises(InvalidEventError):
        from_kafka(b"{}", [])
    with pytest.raises(InvalidEventError):
        from_kafka(b"not json", [("ce_type", b"crm.deal.won"), ("ce_source", b"/x")])


def test_the_sdk_does_not_import_the_platform() -> None:
    code = (
        "import sys, plexica_sdk.events\n"
        "bad = [m for m in sys.modules if m == 'plexica' or m.startswith('plexica.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_event_family_is_the_topic() -> None:
    assert Event(source="/x", type="crm.deal.won").family == "crm.deal"
    assert Event(source="/x", type="plexica.tenant.provisioned").family == "plexica.tenant"
