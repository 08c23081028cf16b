"""``time`` is the relay's per-key clock (ADR 0183): in delivery order it never goes back for a
tenant, even when the transaction that started first commits last."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text

from plexica.events import service
from plexica.events.relay import LocalRelay
from plexica.kit.db import Database
from tests.events.conftest import make_plugin


async def _delivered_times(db: Database, plugin_id: str) -> list[tuple[str, datetime]]:
    async with db.session() as s:
        rows = await s.execute(
            text(
                "SELECT event->>'type' AS type, CAST(event->>'time' AS timestamptz) AS time"
                " FROM platform.event_deliveries WHERE plugin_id = :p ORDER BY seq"
            ),
            {"p": plugin_id},
        )
        return [(r.type, r.time) for r in rows]


async def test_an_event_committed_last_is_not_delivered_earlier_in_time(
    db: Database, tenant: uuid.UUID
) -> None:
    family = "t" + uuid.uuid4().hex[:8] + ".deal"
    plugin = await make_plugin(db, [f"{family}.early", f"{family}.late"], [tenant])
    relay = LocalRelay(db)
    async with db.session() as slow:
        early = await service.publish(slow, f"{family}.early", {}, tenant_id=tenant)
        async with db.session() as fast:
            late = await service.publish(fast, f"{family}.late", {}, tenant_id=tenant)
        assert early.time < late.time
        # Only the committed one is visible to the relay: it goes first.
        assert await relay.step() == (1, False)
    assert await relay.step() == (1, False)

    delivered = await _delivered_times(db, plugin.bus.plugin_id)
    assert [t for t, _ in delivered] == [f"{family}.late", f"{family}.early"]
    (_, first), (_, second) = delivered
    assert first == late.time
    assert second >= first > early.time


async def test_each_tenant_keeps_its_own_clock(db: Database, tenant: uuid.UUID) -> None:
    other = uuid.uuid4()
    family = "t" + uuid.uuid4().hex[:8] + ".deal"
    plugin = await make_plugin(db, [f"{family}.one", f"{family}.two"], [tenant, other])
    relay = LocalRelay(db)
    async with db.session() as s:
        ahead = await service.publish(s, f"{family}.one", {}, tenant_id=tenant)
    async with db.session() as s:
        behind = await service.publish(s, f"{family}.two", {}, tenant_id=other)
        await s.execute(
            text("UPDATE platform.outbox SET time = :t WHERE id = :id"),
            {"t": datetime.fromisoformat("2001-01-01T00:00:00+00:00"), "id": behind.id},
        )
    assert (await relay.step())[0] == 2
    delivered = dict(await _delivered_times(db, plugin.bus.plugin_id))
    assert delivered[f"{family}.one"] == ahead.time
    # Another key's later clock does not move this one.
    assert delivered[f"{family}.two"].year == 2001
