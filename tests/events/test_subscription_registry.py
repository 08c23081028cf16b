"""Which tenants a plugin gets events for, as delivery asks in line with every event: answers
are never older than their time to live, and a plugin's tenants are asked again together, ahead
of time, so that a consumer does not stall on one query per tenant each second (issue 21)."""

from __future__ import annotations

import uuid

from plexica.events import service
from plexica.events.registry import DbSubscriptionRegistry, PluginLoginRegistry
from plexica.kit.db import Database
from plexica_sdk.db import asyncpg_url
from tests.events.conftest import eventually, make_plugin
from tests.events.test_plugin_login_delivery import login_url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted(DbSubscriptionRegistry):
    """The platform's registry, noting the tenants of each query it makes; while ``down`` its
    queries fail as with the database unreachable."""

    def __init__(self, db: Database, clock: Clock) -> None:
        super().__init__(db, ttl_seconds=1.0, clock=clock)
        self.queries: list[set[uuid.UUID]] = []
        self.down = False

    async def _lookup(self, plugin_id: str, tenant_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        self.queries.append(set(tenant_ids))
        if self.down:
            raise ConnectionError("database unreachable")
        return await super()._lookup(plugin_id, tenant_ids)


async def _disable(db: Database, plugin_id: str, tenant: uuid.UUID) -> None:
    async with db.session() as s:
        await service.set_plugin_active(s, plugin_id, tenant, False)


async def _answered(db: Database, n: int) -> tuple[str, list[uuid.UUID], Clock, Counted]:
    """A plugin active for ``n`` tenants, and a registry that has answered for each."""
    tenants = [uuid.uuid4() for _ in range(n)]
    pid, clock = (await make_plugin(db, ["x.y.z"], tenants)).bus.plugin_id, Clock()
    registry = Counted(db, clock)
    assert all([await registry.is_active(pid, t) for t in tenants])
    assert len(registry.queries) == n
    return pid, tenants, clock, registry


async def test_a_plugins_tenants_are_asked_again_together_before_they_expire(
    db: Database,
) -> None:
    pid, tenants, clock, registry = await _answered(db, 20)
    await _disable(db, pid, tenants[3])
    clock.now += 0.6  # half their time: still served, asked again behind the answer
    assert await registry.is_active(pid, tenants[3])
    await eventually(lambda: len(registry.queries) == 21 and not registry._ahead)
    assert registry.queries[-1] == set(tenants)
    assert not await registry.is_active(pid, tenants[3])
    assert [await registry.is_active(pid, t) for t in tenants].count(False) == 1
    assert len(registry.queries) == 21


async def test_an_expired_answer_is_never_served_and_its_neighbours_come_along(
    db: Database,
) -> None:
    pid, tenants, clock, registry = await _answered(db, 10)
    await _disable(db, pid, tenants[0])
    clock.now += 1.0
    assert not await registry.is_active(pid, tenants[0])  # asked in line: the new answer
    assert registry.queries[-1] == set(tenants)
    assert all([await registry.is_active(pid, t) for t in tenants[1:]])
    assert len(registry.queries) == 11
    assert not await registry.is_active(pid, uuid.uuid4())  # never installed there


async def test_only_answers_in_use_are_asked_again_and_idle_ones_are_dropped(
    db: Database,
) -> None:
    pid, tenants, clock, registry = await _answered(db, 10)
    clock.now += 0.6
    await registry.is_active(pid, tenants[0])
    await eventually(lambda: len(registry.queries) == 11 and not registry._ahead)  # all in use
    clock.now += 0.6
    await registry.is_active(pid, tenants[0])
    await eventually(lambda: len(registry.queries) == 12 and not registry._ahead)
    assert registry.queries[-1] == {tenants[0]}  # the only one served since
    clock.now += 1.0
    await registry.is_active(pid, tenants[1])
    assert registry.queries[-1] == {tenants[1]}
    assert len(registry._answers[pid]) <= 2  # the idle ones expired unserved and went


async def test_a_failed_refresh_ahead_of_time_keeps_the_answer_and_waits_before_retrying(
    db: Database,
) -> None:
    pid, tenants, clock, registry = await _answered(db, 2)
    registry.down = True
    clock.now += 0.6
    assert await registry.is_active(pid, tenants[0])  # still within its time: served
    await eventually(lambda: len(registry.queries) == 3 and not registry._ahead)
    assert await registry.is_active(pid, tenants[0])
    assert len(registry.queries) == 3  # quiet for half the time to live
    clock.now += 0.3
    assert await registry.is_active(pid, tenants[0])
    assert len(registry.queries) == 3
    registry.down = False
    clock.now += 0.3  # expired: asked in line
    assert await registry.is_active(pid, tenants[0])
    assert len(registry.queries) == 4
    await registry.aclose()


async def test_a_plugin_login_asks_for_its_own_tenants_only(
    db: Database, database_url: str
) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    me = await make_plugin(db, ["x.y.z"], [mine])
    them = await make_plugin(db, ["x.y.z"], [theirs])
    login = Database(asyncpg_url(await login_url(db, database_url, me.bus.plugin_id)), pool_size=1)
    try:
        registry = PluginLoginRegistry(login, me.bus.plugin_id)
        assert await registry.is_active(me.bus.plugin_id, mine)
        assert not await registry.is_active(me.bus.plugin_id, theirs)
        # One query for both: only its own tenant comes back.
        assert await registry._lookup(me.bus.plugin_id, [mine, theirs]) == {mine}
        assert not await registry.is_active(them.bus.plugin_id, theirs)
    finally:
        await login.dispose()
