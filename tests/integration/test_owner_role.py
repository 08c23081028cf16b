"""The platform never holds a superuser session at run time (ADR 0111): a superuser only makes
the owner role, and the core, the worker, the CLI and ``plexica migrate`` log in as the owner."""

from __future__ import annotations

import stat
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from plexica.cli import runtime
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.ports import free_port
from plexica.plugins.embedded import login_resolver
from plexica.settings import Settings
from tests.harness import servers
from tests.integration.test_cli import PLEXICA, clean_env, start, stop, wait_ready

SUPERUSERS_IN_USE = (
    "SELECT count(*) FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename"
    " WHERE a.datname = current_database() AND r.rolsuper AND a.pid <> pg_backend_pid()"
)


async def _is_superuser(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
    finally:
        await conn.close()


async def test_the_platform_and_its_tests_log_in_as_the_owner(
    database_url: str, db: Database
) -> None:
    assert not await _is_superuser(database_url)
    async with db.session() as s:
        conn = await s.connection()
        row = (
            await conn.exec_driver_sql(
                "SELECT rolsuper, rolcreaterole, session_user = current_user FROM pg_roles"
                " WHERE rolname = current_user"
            )
        ).one()
    assert tuple(row) == (False, True, True)


async def test_plexica_up_never_holds_a_superuser_session() -> None:
    data_dir = servers.session_dir() / f"owner-{uuid.uuid4().hex[:8]}"
    port = free_port()
    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    try:
        wait_ready(port, proc, timeout=240)  # a busy machine: the start has no time target
        found = runtime.read(data_dir)
        assert found is not None
        owner_url = str(found["database_url"])
        # The CLI reaches the running instance with the URL it published: the owner's.
        listed = subprocess.run(
            [*PLEXICA, "tenant", "list", "--data-dir", str(data_dir)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        assert not await _is_superuser(owner_url)
        conn = await asyncpg.connect(owner_url)
        try:
            # Every session on the platform's database (the core, its worker loops, the
            # plugins mounted in-process) is the owner's or a plugin's, none a superuser's.
            assert await conn.fetchval(SUPERUSERS_IN_USE) == 0
            users = await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
            )
            assert {u["usename"] for u in users} <= {"plexica"} | {
                u["usename"] for u in users if str(u["usename"]).startswith("plx_")
            }
            # The plugins mounted in-process got their own logins at start (ADR 0112), and
            # none of their sessions is the platform's.
            logins = await conn.fetch("SELECT plugin_id, role_name FROM platform.plugin_logins")
            assert {r["plugin_id"] for r in logins} >= {"crm", "billing"}
            plugin_sessions = await conn.fetch(
                "SELECT usename FROM pg_stat_activity"
                " WHERE starts_with(application_name, 'plexica-plugin-')"
            )
            assert all(r["usename"] in {x["role_name"] for x in logins} for r in plugin_sessions)
        finally:
            await conn.close()
        password_file = data_dir / "pg-owner-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out


async def test_a_data_dir_made_by_the_superuser_is_adopted_by_the_owner(tmp_path: Path) -> None:
    """Data directories from before the owner role: the superuser's objects and plugin roles
    become the owner's on the next start, and the platform runs on as the owner."""
    del tmp_path  # the server's user must reach the directory: use the session's
    pg = EmbeddedPostgres(servers.session_dir() / f"adopt-{uuid.uuid4().hex[:8]}")
    pg.start()
    try:
        legacy = Database(Settings(database_url=pg.url).sqlalchemy_url, pool_size=1)
        try:
            await upgrade_platform(legacy)
        finally:
            await legacy.dispose()
        admin = await asyncpg.connect(pg.url)
        try:
            await admin.execute(
                'CREATE SCHEMA "tenant_old"; CREATE TABLE "tenant_old".settings (k text);'
                " CREATE ROLE plx_old_0001 NOLOGIN NOINHERIT;"
                ' GRANT USAGE ON SCHEMA "tenant_old" TO plx_old_0001;'
                " SET ROLE plx_old_0001; RESET ROLE;"
                " INSERT INTO platform.plugin_installations (tenant_id, plugin_id, tenant_slug,"
                " version, status, db_role) VALUES (gen_random_uuid(), 'old', 'old', '1.0.0',"
                " 'active', 'plx_old_0001')"
            )
        finally:
            await admin.close()

        owner_url = pg.owner_url()
        assert owner_url == pg.owner_url()  # idempotent: every start runs it
        assert not await _is_superuser(owner_url)
        owner = Database(Settings(database_url=owner_url).sqlalchemy_url, pool_size=1)
        try:
            await upgrade_platform(owner)
        finally:
            await owner.dispose()
        conn = await asyncpg.connect(owner_url)
        try:
            await conn.execute('ALTER TABLE "tenant_old".settings ADD COLUMN v text')
            await conn.execute("DELETE FROM platform.plugin_installations")
            await conn.execute("DROP OWNED BY plx_old_0001 CASCADE; DROP ROLE plx_old_0001")
            assert await conn.fetchval(SUPERUSERS_IN_USE) == 0
        finally:
            await conn.close()
    finally:
        pg.stop()


async def test_an_in_process_plugin_connects_with_its_own_login(settings: Settings) -> None:
    url = await login_resolver(settings)("crm")
    assert url.startswith("postgresql://plx_crm_login_")
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT current_user, rolsuper, rolinherit FROM pg_roles WHERE rolname = current_user"
        )
        assert row is not None
        assert str(row["current_user"]).startswith("plx_crm_login_")
        assert (row["rolsuper"], row["rolinherit"]) == (False, False)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM platform.plugin_logins")
    finally:
        await conn.close()
