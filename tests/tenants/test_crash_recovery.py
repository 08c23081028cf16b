"""A process killed (-9) in the middle of provisioning: a core started afterwards finishes the
tenant, on real PostgreSQL with real processes."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest

from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.ports import free_port
from plexica.settings import Settings
from tests.conftest import create_database, worker_id
from tests.integration.test_cli import clean_env, start, stop, wait_ready
from tests.tenants.test_cli import cli

DEADLINE_SECONDS = 60.0


async def state_of(conn: asyncpg.Connection, slug: str) -> tuple[str | None, str | None]:
    row = await conn.fetchrow(
        "SELECT t.state, s.status FROM platform.tenants t LEFT JOIN platform.tenant_steps s"
        " ON s.tenant_id = t.id AND s.phase = 'provision' AND s.name = 'schema'"
        " WHERE t.slug = $1",
        slug,
    )
    return (row["state"], row["status"]) if row else (None, None)


async def wait_for(conn: asyncpg.Connection, slug: str, wanted: set[str], step: str | None) -> str:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        state, status = await state_of(conn, slug)
        if state in wanted and (step is None or status == step):
            return state
        assert time.monotonic() < deadline, (state, status)
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_core_finishes_a_provisioning_killed_mid_step(
    database_url: str, tmp_path: Path
) -> None:
    slug = f"kill-{uuid.uuid4().hex[:8]}"
    schema = "tenant_" + slug.replace("-", "_")
    env = clean_env(
        PLEXICA_DATABASE_URL=database_url,
        PLEXICA_DATA_DIR=str(tmp_path),
        PLEXICA_DATABASE_STATEMENT_TIMEOUT_MS="0",
    )
    # A slow schema step, for real: its first statement waits on a lock this test holds.
    holder = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        await holder.execute(
            f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".alembic_version'
            " (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
        )
        tx = holder.transaction()
        await tx.start()
        await holder.execute(f'LOCK TABLE "{schema}".alembic_version IN ACCESS EXCLUSIVE MODE')
        creating = start(
            ["tenant", "create", slug, "--name", "Killed", "--admin-email", f"a@{slug}.example"],
            env,
        )
        try:
            await wait_for(watcher, slug, {"provisioning"}, "running")
        finally:
            creating.send_signal(signal.SIGKILL)
            creating.wait(30)
        await tx.rollback()
        assert (await state_of(watcher, slug))[0] == "provisioning"

        port = free_port()
        core = start(
            ["serve", "core"], {**env, "PLEXICA_PORT": str(port), "PLEXICA_RECONCILE_SECONDS": "1"}
        )
        try:
            wait_ready(port, core)
            assert await wait_for(watcher, slug, {"active", "failed"}, None) == "active"
        finally:
            out = stop(core, signal.SIGTERM)
        assert "tenant_reconciled" in out
        r = cli("tenant", "show", slug, "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert '"state": "active"' in r.stdout
    finally:
        await holder.close()
        await watcher.close()


@pytest.mark.slow
async def test_killing_migrate_leaves_no_worker_processes(pg_url: str, tmp_path: Path) -> None:
    # A database of its own: `plexica migrate` works on every tenant of the database, and the
    # shared one has tenants that other tests are making and deleting meanwhile.
    database_url = await create_database(pg_url, f"plexica_migkill_{worker_id()}")
    db = Database(Settings(database_url=database_url).sqlalchemy_url, pool_size=1)
    try:
        await upgrade_platform(db)
    finally:
        await db.dispose()
    slug = f"mig-{uuid.uuid4().hex[:8]}"
    schema = "tenant_" + slug.replace("-", "_")
    env = clean_env(
        PLEXICA_DATABASE_URL=database_url,
        PLEXICA_DATA_DIR=str(tmp_path),
        PLEXICA_DATABASE_STATEMENT_TIMEOUT_MS="0",
    )
    r = cli("tenant", "create", slug, "--name", "M", "--admin-email", f"a@{slug}.example", env=env)
    assert r.returncode == 0, r.stderr
    holder = await asyncpg.connect(database_url)
    try:
        # Behind the head, so the fleet migration has work; held at its per-schema lock.
        await holder.execute(
            "UPDATE platform.tenants SET schema_version = 'behind' WHERE slug = $1", slug
        )
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtext('plexica.migrate.' || $1))", schema
        )
        migrating = start(["migrate", "--concurrency", "2"], env)
        parent = psutil.Process(migrating.pid)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not (workers := parent.children(recursive=True)):
            assert time.monotonic() < deadline, "no worker process started"
            assert migrating.poll() is None, migrating.stdout.read() if migrating.stdout else ""
            await asyncio.sleep(0.1)
        migrating.send_signal(signal.SIGKILL)
        migrating.wait(30)
        _, alive = psutil.wait_procs(workers, timeout=DEADLINE_SECONDS)
        assert alive == [], f"orphans: {[p.pid for p in alive]}"
        await tx.rollback()
        # The next run finishes the schema the killed one left.
        r = cli("migrate", env=env)
        assert r.returncode == 0, r.stderr
        version = await holder.fetchval(
            "SELECT schema_version FROM platform.tenants WHERE slug = $1", slug
        )
        assert version not in (None, "behind")
    finally:
        await holder.close()
