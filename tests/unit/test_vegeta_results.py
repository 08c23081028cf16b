"""vegeta stamps each result in RFC 3339 with nanoseconds; the benches compare them with
``time.time()``."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.vegeta import _epoch


def test_nanosecond_stamps_read_to_the_microsecond_in_any_zone() -> None:
    at = datetime(2026, 12, 7, 3, 30, 35, 123456, tzinfo=UTC).timestamp()
    assert _epoch("2026-12-07T03:30:35.123456789Z") == at
    assert _epoch("2026-12-07T04:30:35.1234567+01:00") == at
    assert _epoch("2026-12-07T03:30:35.5Z") == at - 0.123456 + 0.5
    assert _epoch("2026-12-07T03:30:35Z") == at - 0.123456
