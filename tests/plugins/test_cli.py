"""``plexica plugin ...`` as an operator runs it, and ``plexica plugin new`` whose scaffold's own
test passes against a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from tests.plugins.conftest import CRM_DIR

PLEXICA = [sys.executable, "-m", "plexica.cli"]


def run(
    args: list[str], env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*PLEXICA, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    env.update(extra)
    return env


async def test_plugin_commands(database_url: str, pg_url: str) -> None:
    # A database of its own: `plexica plugin dev` migrates it like a fresh deployment.
    name = "plugins_cli_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    env = clean_env(PLEXICA_DATABASE_URL=url)
    slug, tenant_id = "clitenant", str(uuid.uuid4())
    try:
        conn = await asyncpg.connect(url)
        await conn.execute(f'CREATE SCHEMA "tenant_{slug}"')
        await conn.close()

        once = ["plugin", "dev", str(CRM_DIR), "--once", "--json"]
        out = run([*once, "--tenant", slug, "--tenant-id", tenant_id], env)
        assert json.loads(out.stdout)["status"] == "active"
        versions = json.loads(run(["plugin", "list", "--json"], env).stdout)
        assert [(v["plugin_id"], v["status"]) for v in versions] == [("crm", "published")]
        # Known by slug from now on (no tenants table on this branch: found via installations).
        [listed] = json.loads(run(["plugin", "list", "--tenant", slug, "--json"], env).stdout)
        assert listed["status"] == "active"
        # For people: a table with a header row.
        table = run(["plugin", "list", "--tenant", slug], env).stdout.splitlines()
        assert table[0].split() == ["PLUGIN_ID", "VERSION", "STATUS", "REASON", "UPDATED_AT"]
        assert table[1].split()[:3] == ["crm", "1.4.0", "active"]
        r = run(
            ["plugin", "settings", "crm", "--tenant", slug, "--set", '{"currency": "usd"}'],
            env,
            check=False,
        )
        assert r.returncode == 1
        assert "invalid_settings" in r.stderr
        r = run(["plugin", "disable", "crm", "--tenant", slug, "--json"], env)
        assert json.loads(r.stdout)["status"] == "disabled"
        r = run(["plugin", "uninstall", "crm", "--tenant", slug, "--purge", "--json"], env)
        assert json.loads(r.stdout) == {"plugin_id": "crm", "purged": True}
        r = run(["plugin", "install", "crm", "--tenant", "nobody"], env, check=False)
        assert r.returncode == 1
        assert "tenant_not_found" in r.stderr
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_new_plugin_scaffold_runs_its_own_test(tmp_path: Path, pg_url: str) -> None:
    target = tmp_path / "demo"
    r = run(["plugin", "new", "demo", "--dir", str(target)], clean_env())
    assert "created plugin demo" in r.stdout
    assert (
        run(["plugin", "new", "demo", "--dir", str(target)], clean_env(), check=False).returncode
        == 2
    )
    assert (
        run(
            ["plugin", "new", "Bad-Slug", "--dir", str(tmp_path / "x")], clean_env(), check=False
        ).returncode
        == 2
    )

    env = clean_env(PLEXICA_TEST_DATABASE_URL=pg_url)
    env["PYTHONPATH"] = str(target / "src")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "tests"],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
