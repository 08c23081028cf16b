"""The runtime login (ADR 0215): core, worker and web serve with a role that is no superuser and
owns no platform table. It provisions tenants, installs plugins and serves requests; it cannot
change the platform's tables, read the password catalog or become the owner."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.migrate import MIGRATIONS, heads
from plexica.kit.runtime_role import ensure_runtime_url
from plexica.kit.state import state_of
from plexica.plugins import service
from plexica.plugins.service import HttpReadinessProbe
from plexica.settings import Settings
from plexica.tenants.fleet import migrate_fleet
from plexica.tenants.schemas import TenantCreate
from plexica.tenants.service import TenantService
from plexica_sdk.db import PluginDatabase
from plexica_sdk.manifest import parse_manifest
from tests.conftest import create_database, running, worker_id
from tests.harness import servers
from tests.integration.test_cli import PLEXICA, clean_env
from tests.plugins.conftest import bare_app, plugin_doc, register_doc
from tests.support.tokens import StaticIssuers
from tests.tenants.test_fleet import TRIVIAL


@dataclass(frozen=True)
class Deployment:
    owner_url: str
    runtime_url: str
    owner: str
    runtime: str


def _asyncpg(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
async def deployment(pg_url: str) -> Deployment:
    """A database migrated by ``plexica migrate`` as the owner, told the runtime login."""
    name = f"plexica_rt_{worker_id()}"
    owner_url = await create_database(pg_url, name)
    runtime = f"plexica_rt_{worker_id()}_{secrets.token_hex(4)}"
    runtime_url = (
        make_url(owner_url)
        .set(username=runtime, password=secrets.token_urlsafe(24))
        .render_as_string(hide_password=False)
    )
    owner = await asyncpg.connect(owner_url)
    try:
        # A tenant schema of a deployment from before the runtime role: the owner's.
        await owner.execute('CREATE SCHEMA "tenant_legacy"; CREATE TABLE "tenant_legacy".n (v int)')
    finally:
        await owner.close()
    done = subprocess.run(
        [*PLEXICA, "migrate"],
        env=clean_env(
            PLEXICA_DATABASE_URL=owner_url,
            PLEXICA_RUNTIME_DATABASE_URL=runtime_url,
            PLEXICA_LOG_FORMAT="json",
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "runtime_role_granted" in done.stdout + done.stderr
    return Deployment(owner_url, runtime_url, str(make_url(owner_url).username), runtime)


@pytest.fixture
async def runtime_db(deployment: Deployment) -> AsyncIterator[Database]:
    db = Database(Settings(database_url=deployment.runtime_url).sqlalchemy_url, pool_size=4)
    yield db
    await db.dispose()


async def test_the_runtime_login_provisions_installs_and_serves(
    deployment: Deployment, runtime_db: Database
) -> None:
    issuers = StaticIssuers()
    settings = Settings(
        database_url=deployment.runtime_url,
        data_dir=servers.session_dir() / f"rt-{worker_id()}",
    )
    core = create_app(settings, db=runtime_db, verifier=issuers.verifier())
    manifest = parse_manifest(plugin_doc("jots"))
    endpoints: dict[str, str | ASGIApp] = {"jots": bare_app(manifest)}
    state_of(core).plugin_endpoints = endpoints
    state_of(core).plugin_probe = HttpReadinessProbe(endpoints, timeout=30.0)
    await register_doc(
        runtime_db, plugin_doc("jots"), [("0001_init", "CREATE TABLE jots_items (body text)")]
    )
    op = issuers.operator_headers()
    slug = f"rt-{uuid.uuid4().hex[:8]}"
    async for api in running(core):
        r = await api.post(
            "/v1/tenants",
            json={"slug": slug, "name": "Runtime", "admin_email": "a@rt.example"},
            headers=op,
        )
        assert r.status_code == 201, r.text
        tenant = r.json()
        assert tenant["state"] == "active"
        tenant_id = uuid.UUID(tenant["id"])
        issuers.add_tenant(tenant_id, slug)
        th = {"Authorization": f"Bearer {issuers.token(f'plexica-{slug}', roles=['tenant_admin'])}"}
        assert (await api.put("/v1/tenant/settings/a", json={"value": 1}, headers=th)).is_success
        stored = (await api.get("/v1/tenant/settings", headers=th)).json()
        assert {x["key"]: x["value"] for x in stored} == {"a": 1}

        r = await api.post(
            f"/v1/tenants/{tenant_id}/plugins", json={"plugin_id": "jots"}, headers=th
        )
        assert r.status_code == 201, r.text
        async with runtime_db.session() as s:
            login = await service.ensure_login(s, "jots")
        plugin_db = PluginDatabase(login.database_url(deployment.runtime_url), "jots", pool_size=1)
        try:
            async with plugin_db.tenant_session(tenant_id, slug) as (session, _):
                await session.execute(text("INSERT INTO jots_items (body) VALUES ('hi')"))
            async with plugin_db.tenant_session(tenant_id, slug) as (session, _):
                count = await session.execute(text("SELECT count(*) FROM jots_items"))
                assert count.scalar_one() == 1
        finally:
            await plugin_db.dispose()

        conn = await asyncpg.connect(_asyncpg(deployment.owner_url))
        try:
            schema = "tenant_" + slug.replace("-", "_")
            made_by = await conn.fetchval(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", schema
            )
            assert made_by == deployment.runtime
            # Every session the core opened on the database is the runtime login's.
            users = await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'plexica'"
                " AND pid <> pg_backend_pid()"
            )
            assert {u["usename"] for u in users} == {deployment.runtime}
        finally:
            await conn.close()

        r = await api.delete(f"/v1/tenants/{tenant_id}", headers=op)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "deleted"


async def test_migrate_hands_the_owners_tenant_schemas_to_the_runtime_role(
    deployment: Deployment,
) -> None:
    conn = await asyncpg.connect(_asyncpg(deployment.owner_url))
    try:
        owners = await conn.fetchrow(
            "SELECT n.nspowner::regrole::text AS schema, c.relowner::regrole::text AS tbl"
            " FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid"
            " WHERE n.nspname = 'tenant_legacy' AND c.relname = 'n'"
        )
        assert owners is not None
        assert (owners["schema"], owners["tbl"]) == (deployment.runtime, deployment.runtime)
        # The platform's objects stay the owner's.
        theirs = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname IN ('platform', 'plugin_api') AND c.relowner = $1::regrole",
            deployment.runtime,
        )
        assert theirs == 0
    finally:
        await conn.close()


async def test_a_tenant_migration_by_the_owner_is_handed_to_the_runtime_role(
    deployment: Deployment, runtime_db: Database, tmp_path: Path
) -> None:
    """`plexica migrate` migrates tenant schemas the runtime role made, as the owner (a member of
    it); what the migration creates is the owner's until the grant pass hands it over."""
    tree = tmp_path / "tenant"
    shutil.copytree(MIGRATIONS / "tenant", tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "versions" / "zz0002_trivial.py").write_text(TRIVIAL.format(down=heads("tenant")[0]))
    slug = f"rtm-{uuid.uuid4().hex[:8]}"
    await TenantService(runtime_db).create(
        TenantCreate(slug=slug, name=slug, admin_email="a@rt.example")
    )
    owner_db = Database(Settings(database_url=deployment.owner_url).sqlalchemy_url, pool_size=2)
    try:
        result = await migrate_fleet(owner_db, canary=[slug], wave=1, tree=tree)
    finally:
        await owner_db.dispose()
    assert slug in result.migrated, result.as_dict()
    await ensure_runtime_url(deployment.owner_url, deployment.runtime_url)
    schema = "tenant_" + slug.replace("-", "_")
    async with runtime_db.session(schema) as s:
        await s.execute(text("INSERT INTO fleet_probe (id) VALUES (1)"))
        owner = await s.execute(
            text(
                "SELECT tableowner FROM pg_tables WHERE schemaname = :s AND tablename = 'fleet_probe'"
            ),
            {"s": schema},
        )
        assert owner.scalar_one() == deployment.runtime


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE platform.tenants ADD COLUMN taken boolean",
        "DROP TABLE platform.plugin_logins",
        "CREATE TABLE platform.mine (v int)",
        "CREATE INDEX ON platform.tenants (name)",
        "ALTER TABLE platform.tenants DISABLE TRIGGER ALL",
        "UPDATE platform.alembic_version SET version_num = version_num",
        "SELECT rolpassword FROM pg_authid",
        "SET ROLE {owner}",
        "GRANT {owner} TO {runtime}",
        "ALTER ROLE {owner} PASSWORD 'taken'",
        "ALTER ROLE {runtime} SUPERUSER",
        "ALTER ROLE {runtime} BYPASSRLS",
        "ALTER DATABASE {database} OWNER TO {runtime}",
        "ALTER FUNCTION plugin_api.plugin_id() SECURITY INVOKER",
    ],
)
async def test_the_runtime_login_cannot_change_the_platform_or_become_the_owner(
    deployment: Deployment, statement: str
) -> None:
    conn = await asyncpg.connect(_asyncpg(deployment.runtime_url))
    try:
        sql = statement.format(
            owner=f'"{deployment.owner}"',
            runtime=f'"{deployment.runtime}"',
            database=f'"{make_url(deployment.owner_url).database}"',
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql)
    finally:
        await conn.close()


async def test_the_runtime_role_is_no_superuser_and_a_member_of_nothing(
    deployment: Deployment,
) -> None:
    conn = await asyncpg.connect(_asyncpg(deployment.runtime_url))
    try:
        row = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreatedb, rolreplication, rolcreaterole"
            " FROM pg_roles WHERE rolname = current_user"
        )
        assert row is not None
        assert tuple(row) == (False, False, False, False, True)
        assert not await conn.fetchval("SELECT pg_has_role($1, 'MEMBER')", deployment.owner)
        member_of = await conn.fetch(
            "SELECT roleid::regrole::text AS r FROM pg_auth_members"
            " WHERE member = current_user::regrole"
        )
        assert [m["r"] for m in member_of if not m["r"].startswith("plx_")] == []
        assert (
            await conn.fetchval(
                "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
            )
            == deployment.owner
        )
    finally:
        await conn.close()


async def test_core_requests_reach_the_platform_through_the_runtime_login(
    deployment: Deployment, runtime_db: Database
) -> None:
    settings = Settings(
        database_url=deployment.runtime_url,
        data_dir=servers.session_dir() / f"rt-{worker_id()}",
    )
    issuers = StaticIssuers()
    async for api in running(create_app(settings, db=runtime_db, verifier=issuers.verifier())):
        r = await api.get("/v1/tenants", headers=issuers.operator_headers())
        assert r.status_code == 200, r.text
        assert (await api.get("/ready")).status_code == 200


def test_migrate_refuses_the_owner_as_the_runtime_role(deployment: Deployment) -> None:
    done = subprocess.run(
        [*PLEXICA, "migrate"],
        env=clean_env(
            PLEXICA_DATABASE_URL=deployment.owner_url,
            PLEXICA_RUNTIME_DATABASE_URL=deployment.owner_url,
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    assert "the runtime role must not be the owner role" in done.stderr
