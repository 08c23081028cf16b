"""The head model used by provisioning builds the same schema as the migration history."""

from __future__ import annotations

from sqlalchemy import text

from plexica.kit.db import Database
from plexica.kit.migrate import current_revision, heads, upgrade_schema
from plexica.tenants.schemas import TenantCreate
from plexica.tenants.service import TenantService
from tests.tenants.conftest import new_slug

SHAPE = """
SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default
FROM information_schema.columns c WHERE c.table_schema = :s ORDER BY 1, 2
"""
CONSTRAINTS = """
SELECT tc.table_name, tc.constraint_type, kcu.column_name
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage kcu
  ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
WHERE tc.table_schema = :s ORDER BY 1, 2, 3
"""
INDEXES = "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = :s ORDER BY 1, 2"


async def shape(db: Database, schema: str) -> list[tuple[object, ...]]:
    async with db.session() as s:
        out: list[tuple[object, ...]] = []
        for q in (SHAPE, CONSTRAINTS, INDEXES):
            rows = await s.execute(text(q), {"s": schema})
            out += [tuple(str(v).replace(schema, "S") for v in r) for r in rows]
        return out


async def test_template_equals_migrated_schema(service: TenantService, db: Database) -> None:
    tenant = await service.create(
        TenantCreate(slug=new_slug(), name="T", admin_email="a@b.example")
    )
    replayed = "replay_" + new_slug().replace("-", "_")
    async with db.session() as s:
        await s.execute(text(f'CREATE SCHEMA "{replayed}"'))
    try:
        await upgrade_schema(db, replayed)
        assert await current_revision(db, replayed) == heads("tenant")[0]
        assert await shape(db, tenant.schema_name) == await shape(db, replayed)
    finally:
        async with db.session() as s:
            await s.execute(text(f'DROP SCHEMA "{replayed}" CASCADE'))


async def test_migrating_a_schema_leaves_no_search_path_on_the_pool(db: Database) -> None:
    replayed = "replay_" + new_slug().replace("-", "_")
    async with db.session() as s:
        await s.execute(text(f'CREATE SCHEMA "{replayed}"'))
    try:
        for _ in range(3):
            await upgrade_schema(db, replayed)
            async with db.engine.connect() as conn:
                path = (await conn.execute(text("SHOW search_path"))).scalar_one()
                assert replayed not in path
    finally:
        async with db.session() as s:
            await s.execute(text(f'DROP SCHEMA "{replayed}" CASCADE'))
