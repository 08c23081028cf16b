"""Fleet migrations on a database of their own: canary, waves, halt, resume, versions."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from plexica.kit.db import Database
from plexica.kit.migrate import MIGRATIONS, current_revision, upgrade_platform
from plexica.settings import Settings
from plexica.tenants.fleet import Progress, UnknownCanaryError, migrate_fleet
from plexica.tenants.schemas import TenantCreate
from plexica.tenants.service import TenantService
from tests.conftest import create_database, worker_id

TRIVIAL = '''"""Throwaway revision of the fleet test.

Revision ID: zz0002
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "zz0002"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("fleet_probe", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("fleet_probe")
'''


@pytest.fixture(scope="module")
async def fleet_db(pg_url: str) -> AsyncIterator[Database]:
    url = await create_database(pg_url, f"plexica_fleet_{worker_id()}")
    db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=6)
    await upgrade_platform(db)
    yield db
    await db.dispose()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tenant"
    shutil.copytree(MIGRATIONS / "tenant", copy, ignore=shutil.ignore_patterns("__pycache__"))
    from plexica.kit.migrate import heads

    (copy / "versions" / "zz0002_trivial.py").write_text(TRIVIAL.format(down=heads("tenant")[0]))
    return copy


async def block(db: Database, schema: str, on: bool) -> None:
    """Make the throwaway revision fail in one schema (a table of the same name is in the way)."""
    async with db.session() as s:
        verb = (
            f'CREATE TABLE "{schema}".fleet_probe (x int)'
            if on
            else f'DROP TABLE "{schema}".fleet_probe'
        )
        await s.execute(text(verb))


async def versions(db: Database) -> dict[str, str | None]:
    async with db.session() as s:
        rows = await s.execute(
            text("SELECT slug, schema_version FROM platform.tenants WHERE state = 'active'")
        )
        return {r.slug: r.schema_version for r in rows}


async def test_canary_then_waves_halt_and_resume(fleet_db: Database, tree: Path) -> None:
    service = TenantService(fleet_db)
    slugs = [f"fleet-{i}" for i in range(7)]
    for slug in slugs:
        await service.create(TenantCreate(slug=slug, name=slug, admin_email="a@b.example"))
    base = (await versions(fleet_db))[slugs[0]]
    assert base is not None

    with pytest.raises(UnknownCanaryError):
        await migrate_fleet(fleet_db, canary=["nope-nope"], tree=tree)

    # A failing canary halts the rollout before anybody else is touched.
    await block(fleet_db, "tenant_fleet_3", True)
    seen: list[Progress] = []
    result = await migrate_fleet(
        fleet_db, canary=["fleet-3"], wave=2, tree=tree, progress=seen.append
    )
    assert not result.ok
    assert list(result.failed) == ["fleet-3"]
    assert result.migrated == []
    assert len(result.not_started) == 6
    assert set((await versions(fleet_db)).values()) == {base}
    assert seen[-1].error is not None

    # A healthy canary, then waves of 2; the failure in the second wave stops the third.
    await block(fleet_db, "tenant_fleet_3", False)
    await block(fleet_db, "tenant_fleet_4", True)
    result = await migrate_fleet(fleet_db, canary=["fleet-0"], wave=2, concurrency=2, tree=tree)
    assert list(result.failed) == ["fleet-4"], result.failed
    assert sorted(result.migrated) == ["fleet-0", "fleet-1", "fleet-2", "fleet-3"]
    assert sorted(result.not_started) == ["fleet-5", "fleet-6"]
    v = await versions(fleet_db)
    assert {s for s, ver in v.items() if ver == "zz0002"} == {
        "fleet-0",
        "fleet-1",
        "fleet-2",
        "fleet-3",
    }

    # Fixed and run again: only what is left is migrated; versions recorded both sides.
    await block(fleet_db, "tenant_fleet_4", False)
    result = await migrate_fleet(fleet_db, concurrency=3, tree=tree)
    assert result.ok
    assert sorted(result.migrated) == ["fleet-4", "fleet-5", "fleet-6"]
    assert len(result.up_to_date) == 4
    assert set((await versions(fleet_db)).values()) == {"zz0002"}
    for slug in slugs:
        assert await current_revision(fleet_db, "tenant_" + slug.replace("-", "_")) == "zz0002"
    again = await migrate_fleet(fleet_db, tree=tree)
    assert again.ok
    assert again.migrated == []
    assert len(again.up_to_date) == 7
