"""The storage gauge's bounded tenant label (ADR 0204)."""

from __future__ import annotations

from plexica.fleet_metrics import largest


def test_the_largest_tenants_by_name_and_the_rest_summed_as_other() -> None:
    sizes = {"a": 5, "b": 50, "c": 7, "d": 0, "e": 7}
    assert largest(sizes, 2) == {"b": 50, "c": 7, "other": 12}
    assert sum(largest(sizes, 2).values()) == sum(sizes.values())


def test_no_other_when_every_tenant_has_a_place() -> None:
    assert largest({"a": 1, "b": 2}, 20) == {"b": 2, "a": 1}
    assert largest({}, 3) == {}
