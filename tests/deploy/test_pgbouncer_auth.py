"""The chart's PgBouncer (ADR 0210) on real servers: its rendered pgbouncer.ini and the in-chart
PostgreSQL's first-start SQL (auth role and lookup function), run against the test PostgreSQL
and a real PgBouncer. Each login reaches the database as itself; no superuser gets through."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from deploy import k8s_render
from plexica.kit.pgserver import _allow_traverse, _run_as
from plexica.kit.ports import free_port
from plexica.kit.runtime_role import ensure_runtime
from tests.harness import servers
from tests.harness.servers import spawn, wait_for_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass
class Site:
    admin_url: str  # the test server's superuser, on the chart's database
    host: str
    port: int  # PgBouncer's
    database: str
    owner: str
    owner_password: str
    auth_user: str
    auth_password: str
    readiness: list[str]  # the Deployment's readiness probe, aimed at this PgBouncer


def _rendered(suffix: str) -> dict[str, dict[str, Any]]:
    values = k8s_render.values("values-dev.yaml")
    values["postgresql"] = {**values.get("postgresql", {}), "username": f"owner_{suffix}",
                            "database": f"chart_{suffix}"}  # fmt: skip
    values["pgbouncer"] = {**values.get("pgbouncer", {}), "authUser": f"bouncer_{suffix}"}
    values["keycloak"] = {"enabled": False}
    values["external"] = {"keycloakCidr": "10.0.0.0/8", "keycloakUrl": "http://id.invalid"}
    docs = k8s_render.documents(k8s_render.render(None, **values))
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def _init_sql(script: str, env: dict[str, str]) -> str:
    """The SQL of the first-start script's here-document, as its shell would expand it."""
    body = script.split("<<SQL\n", 1)[1].rsplit("\nSQL", 1)[0]
    body = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], body)
    return body.replace("\\$", "$")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import asyncio

    record = servers.ensure("postgres")
    suffix = secrets.token_hex(4)
    maps = _rendered(suffix)
    script = maps["ConfigMap/plexica-postgresql-initdb"]["data"]["10-roles.sh"]
    ini = maps["ConfigMap/plexica-pgbouncer"]["data"]["pgbouncer.ini"]
    pod = maps["Deployment/plexica-pgbouncer"]["spec"]["template"]["spec"]
    probe = next(c for c in pod["containers"] if c["name"] == "pgbouncer")["readinessProbe"]
    owner, auth = f"owner_{suffix}", f"bouncer_{suffix}"
    database = f"chart_{suffix}"
    owner_pw, auth_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    su_url = str(record["superuser_url"])
    base = su_url.rsplit("/", 1)[0]
    host_port = re.search(r"@([^/]+)/", su_url)
    assert host_port is not None
    host, pg_port = host_port.group(1).rsplit(":", 1)
    env = {"OWNER_DB_PASSWORD": owner_pw, "PGBOUNCER_AUTH_PASSWORD": auth_pw}

    async def prepare() -> None:
        conn = await asyncpg.connect(su_url)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(f"{base}/{database}")
        try:
            await conn.execute(_init_sql(script, env))
        finally:
            await conn.close()

    asyncio.run(prepare())
    work = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    (work / "userlist.txt").write_text(f'"{auth}" "{auth_pw}"\n')
    config = (
        ini.replace("host=plexica-postgresql port=5432", f"host={host} port={pg_port}")
        .replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
        .replace("listen_port = 5432", f"listen_port = {port}")
        .replace("/etc/pgbouncer/userlist.txt", str(work / "userlist.txt"))
    )
    assert f"host={host} port={pg_port}" in config
    (work / "pgbouncer.ini").write_text(config)
    # PgBouncer, like PostgreSQL, refuses to run as root: the embedded server's system user.
    run_as = _run_as()
    if run_as.uid is not None:
        _allow_traverse(work)
        for path in (work, work / "userlist.txt", work / "pgbouncer.ini"):
            os.chown(path, run_as.uid, run_as.gid or -1)
    proc = spawn(
        [PGBOUNCER, str(work / "pgbouncer.ini")], work / "pgbouncer.log",
        user=run_as.uid, group=run_as.gid, extra_groups=None if run_as.uid is None else [],
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60, proc=proc)
        readiness = [a.replace("--port=5432", f"--port={port}") for a in probe["exec"]["command"]]
        yield Site(f"{base}/{database}", "127.0.0.1", port, database, owner, owner_pw, auth,
                   auth_pw, readiness)  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def admin(site: Site) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(site.admin_url)
    try:
        yield conn
    finally:
        await conn.close()


async def through_bouncer(site: Site, user: str, password: str) -> str:
    conn = await asyncpg.connect(
        host=site.host, port=site.port, user=user, password=password, database=site.database,
        statement_cache_size=0,
    )  # fmt: skip
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


def test_the_readiness_probe_is_answered_by_pgbouncer_without_a_password(site: Site) -> None:
    """Liveness is the port accepting; readiness asks PgBouncer for a login (the auth user's,
    whose password it holds itself) and takes its password request for an answer."""
    assert f"--port={site.port}" in site.readiness
    assert f"--username={site.auth_user}" in site.readiness
    assert f"--dbname={site.database}" in site.readiness
    done = subprocess.run(site.readiness, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_each_login_reaches_postgresql_as_itself(
    site: Site, admin: asyncpg.Connection
) -> None:
    plugin, pw = f"plx_crm_login_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    await admin.execute(f"CREATE ROLE {plugin} LOGIN PASSWORD '{pw}'")
    await admin.execute(f"GRANT CONNECT ON DATABASE {site.database} TO {plugin}")
    assert await through_bouncer(site, plugin, pw) == plugin
    assert await through_bouncer(site, site.owner, site.owner_password) == site.owner


async def test_the_runtime_role_reaches_postgresql_as_itself(site: Site) -> None:
    """ADR 0215: the role core, worker and web serve with (CREATEROLE, made by the owner as the
    migrate Job does) passes the lookup; its password is not the owner's."""
    role, pw = f"plexica_runtime_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    owner = await asyncpg.connect(site.admin_url, user=site.owner, password=site.owner_password)
    try:
        await owner.execute("CREATE SCHEMA IF NOT EXISTS platform")
        await ensure_runtime(owner, role, pw)
    finally:
        await owner.close()
    assert await through_bouncer(site, role, pw) == role
    with pytest.raises(asyncpg.PostgresError, match=r"password|SASL"):
        await through_bouncer(site, site.owner, pw)


async def test_wrong_password_and_the_platform_login_are_refused_to_a_plugin(
    site: Site, admin: asyncpg.Connection
) -> None:
    plugin, pw = f"plx_billing_login_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    await admin.execute(f"CREATE ROLE {plugin} LOGIN PASSWORD '{pw}'")
    with pytest.raises(asyncpg.PostgresError, match=r"password|SASL"):
        await through_bouncer(site, plugin, "not-its-password")
    # A plugin knows only its own password: the platform's login with it fails.
    with pytest.raises(asyncpg.PostgresError, match=r"password|SASL"):
        await through_bouncer(site, site.owner, pw)


async def test_no_superuser_gets_through_even_with_its_password(
    site: Site, admin: asyncpg.Connection
) -> None:
    su, pw = f"su_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    await admin.execute(f"CREATE ROLE {su} LOGIN SUPERUSER PASSWORD '{pw}'")
    try:
        with pytest.raises(asyncpg.PostgresError, match="no such user"):
            await through_bouncer(site, su, pw)
    finally:
        await admin.execute(f"DROP ROLE {su}")


async def test_the_auth_user_can_only_call_the_lookup(site: Site) -> None:
    conn = await asyncpg.connect(site.admin_url, user=site.auth_user, password=site.auth_password)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT rolpassword FROM pg_catalog.pg_authid")
        # No row (PgBouncer: no such user) for a superuser, whose password it never learns.
        assert await conn.fetch("SELECT * FROM pgbouncer.user_lookup('postgres')") == []
        row = await conn.fetchrow("SELECT * FROM pgbouncer.user_lookup($1)", site.owner)
        assert row is not None
        assert row["usename"] == site.owner
        assert str(row["passwd"]).startswith("SCRAM-SHA-256$")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE pgbouncer.x (a int)")
    finally:
        await conn.close()
