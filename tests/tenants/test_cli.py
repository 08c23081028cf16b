"""`plexica tenant ...` and `plexica migrate` as a user runs them, on real PostgreSQL."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plexica.kit.ports import free_port
from tests.integration.test_cli import PLEXICA, clean_env, start, stop, wait_ready


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PLEXICA, *args], env=env, capture_output=True, text=True, timeout=120)


def as_json(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.stdout, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_tenant_commands_on_a_database_url(database_url: str) -> None:
    env = clean_env(PLEXICA_DATABASE_URL=database_url)
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    r = cli(
        "tenant",
        "create",
        slug,
        "--name",
        "CLI Corp",
        "--admin-email",
        "a@cli.example",
        "--json",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    created = as_json(r)
    assert created["state"] == "active"
    assert created["slug"] == slug

    r = cli(
        "tenant", "create", slug, "--name", "x", "--admin-email", "a@cli.example", "--json", env=env
    )
    assert r.returncode == 1
    assert as_json(r)["error"]["code"] == "tenant_exists"
    r = cli(
        "tenant", "create", "Bad;Slug", "--name", "x", "--admin-email", "a@cli.example", env=env
    )
    assert r.returncode == 1
    assert "invalid_slug" in r.stderr

    # Provisioning invited the first admin (into the dev mailbox: no SMTP here).
    r = cli("tenant", "invite-admin", slug, "--status", env=env)
    assert r.stdout.strip() == "a@cli.example: pending", r.stderr
    sent = as_json(cli("tenant", "invite-admin", slug, "--json", env=env))
    assert (sent["email"], sent["sent_count"]) == ("a@cli.example", 2)

    r = cli("tenant", "suspend", slug, env=env)
    assert r.returncode == 0
    assert f"{slug}: suspended" in r.stdout
    listed = as_json(cli("tenant", "list", "--state", "suspended", "--json", env=env))
    assert slug in [t["slug"] for t in listed]
    shown = as_json(cli("tenant", "show", created["id"], "--json", env=env))
    assert shown["state"] == "suspended"
    assert shown["steps"][0]["name"] == "schema"
    assert [h["to_state"] for h in shown["history"]] == ["provisioning", "active", "suspended"]
    r = cli("tenant", "reactivate", slug, "--json", env=env)
    assert as_json(r)["state"] == "active"
    r = cli("tenant", "delete", slug, env=env)
    assert r.returncode == 2
    assert "--yes" in r.stderr
    r = cli("tenant", "delete", slug, "--yes", "--json", env=env)
    assert r.returncode == 0
    assert as_json(r)["state"] == "deleted"
    r = cli("tenant", "show", "no-such-tenant", env=env)
    assert r.returncode == 1
    assert "tenant_not_found" in r.stderr


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's basetemp: every pytest session on the machine resets that to 0700, which
    # would lock out the unprivileged PostgreSQL user mid-test.
    root = Path(tempfile.mkdtemp(prefix="plexica-tenant-cli-"))
    d = root / "data"
    yield d
    if (d / "pg" / "postmaster.pid").exists():
        from plexica.kit.pgserver import EmbeddedPostgres

        EmbeddedPostgres(d).stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_cli_finds_a_running_plexica_up(data_dir: Path) -> None:
    env = clean_env()
    r = cli("tenant", "list", "--data-dir", str(data_dir), env=env)
    assert r.returncode == 2
    assert "plexica up" in r.stderr
    port = free_port()
    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], env)
    try:
        wait_ready(port, proc)
        runtime = data_dir / "runtime.json"
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o600
        info = json.loads(runtime.read_text())
        assert info["pid"] == proc.pid
        assert info["url"] == f"http://127.0.0.1:{port}"
        r = cli(
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme",
            "--admin-email",
            "a@acme.example",
            "--data-dir",
            str(data_dir),
            env=env,
        )
        assert r.returncode == 0, r.stderr
        assert "acme: active" in r.stdout
        at = ["--data-dir", str(data_dir)]
        r = cli("tenant", "invite-admin", "acme", *at, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("invitation sent to a@acme.example")
        shown = as_json(cli("tenant", "invite-admin", "acme", "--status", "--json", *at, env=env))
        assert (shown["status"], shown["invite"]["sent_count"]) == ("pending", 2)
        mails = as_json(cli("mail", "list", "--to", "a@acme.example", "--json", *at, env=env))
        assert len(mails) == 2
        r = cli("migrate", "--data-dir", str(data_dir), "--canary", "acme", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["up_to_date"] == 1
    finally:
        out = stop(proc)
    # `plexica up` has no SMTP server: it logs each invitation's link.
    assert out.count("invite_link") == 2, out
    assert "/invite/" in out
    assert not (data_dir / "runtime.json").exists()
    r = cli("tenant", "list", "--data-dir", str(data_dir), env=env)
    assert r.returncode == 2
