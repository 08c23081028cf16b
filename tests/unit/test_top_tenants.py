"""The bounded tenant label of the request metrics (ADR 0200)."""

from __future__ import annotations

import pytest

from plexica.settings import load_settings
from plexica_sdk.toptenants import (
    DEFAULT_TOP,
    NONE,
    OTHER,
    TOP_TENANTS_ENV,
    TopTenants,
    top_from_env,
)


def test_the_first_tenants_take_the_free_places_and_the_rest_are_other() -> None:
    top = TopTenants(2, window=1000)
    assert [top.label(t) for t in ("a", "b", "c", "a")] == ["a", "b", OTHER, "a"]
    assert top.label(None) == NONE
    assert top.label("") == NONE


def test_a_busy_newcomer_gets_a_place_at_the_next_window() -> None:
    top = TopTenants(2, window=100)
    for tenant in ("a", "b"):
        top.label(tenant)
    labels = [top.label("noisy") for _ in range(98)]
    assert labels[0] == OTHER
    assert labels[-1] == "noisy"  # the 100th request of the window re-ranked the places
    assert sum(top.known(t) != OTHER for t in ("a", "b")) == 1


def test_a_tenant_that_went_quiet_makes_room() -> None:
    top = TopTenants(1, window=10)
    for _ in range(10):
        top.label("early")
    assert top.known("early") == "early"
    for _ in range(30):
        top.label("late")
    assert top.known("late") == "late"
    assert top.known("early") == OTHER


def test_known_does_not_count() -> None:
    top = TopTenants(1, window=2)
    top.label("a")
    for _ in range(10):
        assert top.known("b") == OTHER
    assert top.label("a") == "a"


def test_no_more_than_size_tenants_have_a_label_at_any_time() -> None:
    top = TopTenants(5, window=64)
    for i in range(10_000):
        top.label(f"t{i % 97}")
        named = [t for t in (f"t{j}" for j in range(97)) if top.known(t) != OTHER]
        assert len(named) <= 5


def test_the_size_comes_from_the_environment_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, size in (("5", 5), ("0", 1), ("100000", 1000), ("", DEFAULT_TOP), ("x", DEFAULT_TOP)):
        monkeypatch.setenv(TOP_TENANTS_ENV, raw)
        assert top_from_env() == size


def test_the_platform_knows_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOP_TENANTS_ENV, "7")
    assert load_settings().metrics_top_tenants == 7
