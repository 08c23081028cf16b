"""The outbox writes an event in the caller's transaction, and only then."""

import uuid

import pytest
from sqlalchemy import text

from plexica.events.service import publish
from plexica.kit.db import Database


async def _count(db: Database, event_id: uuid.UUID) -> int:
    async with db.session() as s:
        r = await s.execute(
            text("SELECT count(*) FROM platform.outbox WHERE id = :id"), {"id": event_id}
        )
        return int(r.scalar_one())


async def test_event_commits_with_the_change(db: Database) -> None:
    tenant = uuid.uuid4()
    async with db.session() as s:
        event = await publish(s, "sample.test.happened", {"n": 1}, tenant_id=tenant, subject="x")
    assert await _count(db, event.id) == 1
    async with db.session() as s:
        row = (
            await s.execute(
                text("SELECT type, tenant_id, data, source FROM platform.outbox WHERE id = :id"),
                {"id": event.id},
            )
        ).one()
    assert row.type == "sample.test.happened"
    assert row.tenant_id == tenant
    assert row.data == {"n": 1}
    assert row.source == "/plexica/core"


async def test_nothing_is_published_for_a_rolled_back_change(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session() as s:
            event = await publish(s, "sample.test.happened", {})
            raise RuntimeError("the change failed")
    assert await _count(db, event.id) == 0


@pytest.mark.parametrize("bad", ["Tenant.Created", "tenant", "a.b", "a..b.c", "crm.deal.won!"])
async def test_malformed_event_types_are_refused(db: Database, bad: str) -> None:
    from pydantic import ValidationError

    async with db.session() as s:
        with pytest.raises(ValidationError):
            await publish(s, bad, {})
