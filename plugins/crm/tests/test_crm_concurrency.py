"""Parallel requests at one deal (SDK concurrency kit, real PostgreSQL): moves and changes apply
in order, every event's "from" is what its request really changed, and a deal is won once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plexica_sdk.testing import KitTenant, PluginTestKit, race

STAGES = ("qualified", "proposal", "won", "lost", "lead", "qualified", "proposal", "won")


@pytest.fixture(scope="module")
def http(kit: PluginTestKit) -> Iterator[httpx.Client]:
    tenant: KitTenant = kit.tenant("racers")
    with kit.client(tenant, roles=["member"]) as client:
        client.timeout = httpx.Timeout(60)
        yield client


def _events(kit: PluginTestKit, deal_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = asyncio.run(
        kit.fetch(
            "SELECT type, data FROM platform.outbox WHERE subject LIKE '%' || $1 ORDER BY seq",
            deal_id,
        )
    )
    return [(r["type"], json.loads(r["data"])) for r in rows]


def _new_deal(http: httpx.Client, n: int) -> str:
    deal = http.post("/v1/deals", json={"title": f"race {n}", "amount": "100.00"})
    assert deal.status_code == 201, deal.text
    return str(deal.json()["id"])


def test_a_deal_won_from_eight_places_at_once_is_won_once(
    kit: PluginTestKit, http: httpx.Client
) -> None:
    def move(deal_id: str, _i: int) -> httpx.Response:
        return http.post(f"/v1/deals/{deal_id}/stage", json={"stage_id": "won"})

    def check(deal_id: str, answers: list[httpx.Response]) -> None:
        assert [r.status_code for r in answers] == [200] * len(answers), answers[0].text
        events = _events(kit, deal_id)
        assert [t for t, _ in events if t.endswith(".won")] == ["crm.deal.won"]
        moves = [d for t, d in events if t.endswith(".stage_changed")]
        assert [(m["from"], m["to"]) for m in moves] == [("lead", "won")]

    race(lambda n: _new_deal(http, n), move, check, parallel=8, rounds=20)


def test_parallel_moves_of_one_deal_form_one_chain(kit: PluginTestKit, http: httpx.Client) -> None:
    def move(deal_id: str, i: int) -> httpx.Response:
        return http.post(f"/v1/deals/{deal_id}/stage", json={"stage_id": STAGES[i % len(STAGES)]})

    def check(deal_id: str, answers: list[httpx.Response]) -> None:
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        moves = [d for t, d in _events(kit, deal_id) if t.endswith(".stage_changed")]
        stage = "lead"
        for m in moves:
            assert m["from"] == stage, moves
            assert m["to"] != stage
            stage = m["to"]
        assert http.get(f"/v1/deals/{deal_id}").json()["stage_id"] == stage

    race(lambda n: _new_deal(http, n), move, check, parallel=8, rounds=20)


# Overlapping values: some PATCHes of a round change a field back, some change nothing at all.
PATCHES = (
    {"title": "A", "amount": "1.00"},
    {"title": "B"},
    {"amount": "2.5", "currency": "USD"},
    {"title": "A", "currency": "EUR"},
    {"title": "race 0"},
    {"amount": "100", "title": "C"},
    {"currency": "USD", "amount": "1"},
    {"title": "B", "amount": "2.50"},
)


def test_parallel_patches_of_one_deal_form_one_chain(
    kit: PluginTestKit, http: httpx.Client
) -> None:
    def patch(deal_id: str, i: int) -> httpx.Response:
        return http.patch(f"/v1/deals/{deal_id}", json=PATCHES[i % len(PATCHES)])

    def check(deal_id: str, answers: list[httpx.Response]) -> None:
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        events = _events(kit, deal_id)
        changes = [d["changes"] for t, d in events if t == "crm.deal.updated"]
        assert changes
        created = next(d for t, d in events if t == "crm.deal.created")
        row = {name: created[name] for name in ("title", "amount", "currency")}
        for change in changes:
            for name, step in change.items():
                assert step["from"] == row[name], changes
                assert step["to"] != step["from"], changes
                row[name] = step["to"]
        final = http.get(f"/v1/deals/{deal_id}").json()
        assert {name: final[name] for name in row} == row
        assert final["stage_id"] == "lead"

    race(lambda n: _new_deal(http, 0), patch, check, parallel=8, rounds=20)
