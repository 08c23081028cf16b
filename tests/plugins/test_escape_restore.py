"""A tenant's backup holds the plugins' SQL (functions, constraints, indexes): restoring it must
run none of it with the platform's privileges (ADR 0110, 0111). The archive's schema is loaded
logged in as a throwaway role that owns nothing but the schema being restored."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from plexica.backup.service import backup_tenant, restore_tenant
from plexica.kit.db import Database
from plexica.kit.provisioning import schema_of
from plexica.plugins import service
from plexica.storage.local import LocalStore
from plexica_sdk.db import plugin_role
from plexica_sdk.manifest import parse_manifest
from tests.plugins.conftest import Platform, TenantFactory, bare_app, plugin_doc
from tests.plugins.test_escape import _catalog_directly

CORE = "/api/core/v1"

# Passes every install check: the function is the plugin's own, not SECURITY DEFINER, and while
# the plugin's role runs it (the row inserted by the migration) CREATE ROLE fails quietly. A
# restore loads the row again (COPY), which evaluates the CHECK as whoever loads it.
TROJAN = """
CREATE FUNCTION {p}_valid(int) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN
  BEGIN EXECUTE 'CREATE ROLE {p}_pwned'; EXCEPTION WHEN others THEN NULL; END;
  RETURN true; END $f$;
CREATE TABLE {p}_items (id int CHECK ({p}_valid(id)));
INSERT INTO {p}_items VALUES (1);
"""


async def test_restoring_a_backup_runs_no_plugin_code_as_the_platform(
    platform: Platform,
    db: Database,
    database_url: str,
    make_tenant: TenantFactory,
    tmp_path: Path,
) -> None:
    t = await make_tenant()
    p = "esc" + uuid.uuid4().hex[:8]
    await _catalog_directly(db, p, TROJAN.format(p=p))
    async with db.session() as s:
        await service.ensure_login(s, p)
    platform.endpoints[p] = bare_app(parse_manifest(plugin_doc(p)))
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins", json={"plugin_id": p}, headers=t.headers("tenant_admin")
    )
    assert r.status_code == 201, r.text

    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    store = LocalStore(tmp_path / "objects")
    archive = tmp_path / "t.tar"
    await backup_tenant(url, store, t.ref.slug, archive)
    source, copy = schema_of(t.ref.slug), "r" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(url)
    try:
        # The tenant is gone (disaster recovery): its schema is out of the way.
        await conn.execute(f'ALTER SCHEMA "{source}" RENAME TO "{source}_away"')
        try:
            await restore_tenant(url, store, archive, as_slug=copy)
            restored = await conn.fetchval(f'SELECT count(*) FROM "{schema_of(copy)}".{p}_items')
            assert restored == 1
            owner = await conn.fetchval(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1",
                schema_of(copy),
            )
            assert owner == make_url(database_url).username
            pwned = await conn.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname = $1", f"{p}_pwned"
            )
            assert pwned == 0, "the plugin's CHECK ran with the platform's privileges"
            leftover = await conn.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'plexica\\_restore\\_%'"
            )
            assert leftover == 0
        finally:
            await conn.execute(f'DROP ROLE IF EXISTS "{p}_pwned"')
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_of(copy)}" CASCADE')
            await conn.execute(f'ALTER SCHEMA "{source}_away" RENAME TO "{source}"')
    finally:
        await conn.close()


async def test_a_function_the_plugin_made_security_definer_is_restored_as_invoker(
    platform: Platform,
    db: Database,
    database_url: str,
    make_tenant: TenantFactory,
    tmp_path: Path,
) -> None:
    """At run time the plugin's role owns its functions and may make one SECURITY DEFINER
    (harmless while it runs as that role); restored, the owner owns it and it must not run as
    the owner for whoever calls it."""
    t = await make_tenant()
    p = "esc" + uuid.uuid4().hex[:8]
    await _catalog_directly(
        db,
        p,
        f"CREATE FUNCTION {p}_who() RETURNS text LANGUAGE plpgsql"
        " AS $f$ BEGIN RETURN current_user; END $f$;",
    )
    async with db.session() as s:
        await service.ensure_login(s, p)
    platform.endpoints[p] = bare_app(parse_manifest(plugin_doc(p)))
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins", json={"plugin_id": p}, headers=t.headers("tenant_admin")
    )
    assert r.status_code == 201, r.text
    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    source, copy = schema_of(t.ref.slug), "r" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():  # what the plugin may do through its login at run time
            await conn.execute(f'SET LOCAL ROLE "{plugin_role(p, t.id)}"')
            await conn.execute(f'ALTER FUNCTION "{source}".{p}_who() SECURITY DEFINER')
        store = LocalStore(tmp_path / "objects")
        archive = tmp_path / "t.tar"
        await backup_tenant(url, store, t.ref.slug, archive)
        await conn.execute(f'ALTER SCHEMA "{source}" RENAME TO "{source}_away"')
        try:
            await restore_tenant(url, store, archive, as_slug=copy)
            definers = await conn.fetch(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = $1 AND p.prosecdef",
                schema_of(copy),
            )
            assert [d[0] for d in definers] == []
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_of(copy)}" CASCADE')
            await conn.execute(f'ALTER SCHEMA "{source}_away" RENAME TO "{source}"')
    finally:
        await conn.close()


pytestmark = pytest.mark.usefixtures("crm_manifest")


async def test_backup_and_restore_keep_the_database_password_off_command_lines(
    database_url: str, make_tenant: TenantFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pg_dump`` and ``psql`` get the owner's password in their environment: a command line
    is readable by every user of the machine."""
    t = await make_tenant()
    url = make_url(database_url).set(drivername="postgresql")
    assert url.password
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def spy(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append((list(cmd), dict(kwargs.get("env") or {})))
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    store = LocalStore(tmp_path / "objects")
    plain, source, copy = (
        url.render_as_string(False),
        schema_of(t.ref.slug),
        "r" + uuid.uuid4().hex[:10],
    )
    await backup_tenant(plain, store, t.ref.slug, tmp_path / "t.tar")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'ALTER SCHEMA "{source}" RENAME TO "{source}_away"')
        try:
            await restore_tenant(plain, store, tmp_path / "t.tar", as_slug=copy)
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_of(copy)}" CASCADE')
            await conn.execute(f'ALTER SCHEMA "{source}_away" RENAME TO "{source}"')
    finally:
        await conn.close()
    assert seen
    for cmd, env in seen:
        assert not any(str(url.password) in arg for arg in cmd), cmd[0]
        assert env.get("PGPASSWORD"), cmd[0]
