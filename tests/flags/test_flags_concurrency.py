"""Parallel changes to one flag (SDK concurrency kit, real PostgreSQL): each is applied in order
on the flag's row, so versions and the history have no gaps and no change is lost."""

from __future__ import annotations

import httpx

from plexica_sdk.testing import arace
from tests.flags.conftest import new_key
from tests.support.tokens import StaticIssuers


async def test_parallel_toggles_and_creates_of_one_flag(
    core: httpx.AsyncClient, issuers: StaticIssuers
) -> None:
    op = issuers.operator_headers()

    async def setup(_n: int) -> str:
        return new_key()

    async def create_then_toggle(key: str, i: int) -> tuple[int, int]:
        made = await core.post("/v1/flags", json={"key": key}, headers=op)
        toggled = await core.post(f"/v1/flags/{key}/toggle", headers=op)
        return made.status_code, toggled.status_code

    async def check(key: str, answers: list[tuple[int, int]]) -> None:
        assert sorted(made for made, _ in answers) == [201] + [409] * (len(answers) - 1)
        assert {toggled for _, toggled in answers} == {200}
        flag = (await core.get(f"/v1/flags/{key}", headers=op)).json()
        assert flag["version"] == 1 + len(answers)
        assert flag["enabled"] is (len(answers) % 2 == 0)
        history = (await core.get(f"/v1/flags/{key}/changes", headers=op)).json()
        versions = sorted(h["after"]["version"] for h in history if h["after"])
        assert versions == list(range(1, len(answers) + 2))

    await arace(setup, create_then_toggle, check, parallel=8, rounds=20)
