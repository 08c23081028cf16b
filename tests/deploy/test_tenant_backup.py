"""scripts/tenant-backup and scripts/tenant-restore against the real test PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest

from deploy.ops.tenant_backup import BackupError, backup, main, restore, schema_of
from tests.conftest import create_database, worker_id
from tests.deploy.conftest import ROOT


@pytest.fixture
async def db(pg_url: str) -> str:
    url = await create_database(pg_url, f"tenant_backup_{worker_id()}")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            CREATE SCHEMA tenant_acme_co;
            CREATE TABLE tenant_acme_co.contacts (id int PRIMARY KEY, name text NOT NULL);
            INSERT INTO tenant_acme_co.contacts VALUES (1, 'Ada'), (2, 'Grace');
            CREATE SCHEMA tenant_other;
            CREATE TABLE tenant_other.contacts (id int PRIMARY KEY);
            INSERT INTO tenant_other.contacts VALUES (7);
            """
        )
    finally:
        await conn.close()
    return url


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    async def fetch() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def execute(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def test_backup_then_restore_brings_back_exactly_that_tenant(db: str, tmp_path: Path) -> None:
    dump = backup(db, "acme-co", tmp_path / "acme.dump")
    assert dump.stat().st_size > 0
    execute(db, "DELETE FROM tenant_acme_co.contacts WHERE id = 1")
    execute(db, "INSERT INTO tenant_acme_co.contacts VALUES (3, 'Mallory')")
    execute(db, "INSERT INTO tenant_other.contacts VALUES (8)")
    aside = restore(db, "acme-co", dump)
    assert aside.startswith("tenant_acme_co__pre_restore_")
    restored = rows(db, "SELECT id, name FROM tenant_acme_co.contacts ORDER BY id")
    assert restored == [(1, "Ada"), (2, "Grace")]
    assert rows(db, f"SELECT id FROM {aside}.contacts ORDER BY id") == [(2,), (3,)]
    # Another tenant is untouched by the restore.
    assert rows(db, "SELECT id FROM tenant_other.contacts ORDER BY id") == [(7,), (8,)]


def test_failed_restore_changes_nothing(db: str, tmp_path: Path) -> None:
    other = backup(db, "other", tmp_path / "other.dump")
    with pytest.raises(BackupError, match="not exactly tenant_acme_co"):
        restore(db, "acme-co", other)
    good = backup(db, "acme-co", tmp_path / "acme.dump")
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BackupError):
        restore(db, "acme-co", truncated)
    assert rows(db, "SELECT count(*) FROM tenant_acme_co.contacts") == [(2,)]
    schemas = rows(db, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant_acme%'")
    assert schemas == [("tenant_acme_co",)]


def test_bad_input_is_refused(tmp_path: Path, pg_url: str) -> None:
    for slug in ("Acme", "a", "acme;drop", "../x"):
        with pytest.raises(BackupError, match="invalid tenant slug"):
            schema_of(slug)
    with pytest.raises(BackupError, match="does not exist"):
        backup(pg_url, "nobody", tmp_path / "x.dump")
    assert not (tmp_path / "x.dump").exists()
    assert main(["backup", "acme"]) == 2


def test_scripts_run_end_to_end(db: str, tmp_path: Path) -> None:
    env = {**os.environ, "PLEXICA_DATABASE_URL": db}
    dump = tmp_path / "acme.dump"
    out = subprocess.run(
        [str(ROOT / "scripts" / "tenant-backup"), "acme-co", str(dump)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "backed up tenant_acme_co" in out.stdout
    out = subprocess.run(
        [str(ROOT / "scripts" / "tenant-restore"), "acme-co", str(dump)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "previous data is in schema tenant_acme_co__pre_restore_" in out.stdout
    out = subprocess.run(
        [str(ROOT / "scripts" / "tenant-restore"), "acme-co", str(tmp_path / "missing.dump")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "does not exist" in out.stderr
