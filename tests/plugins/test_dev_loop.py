"""``plexica plugin dev`` on a scaffolded plugin: it serves the plugin as its own process,
installed in a tenant, and reloads on every edit; a syntax error is reported and the loop
keeps watching until the fix serves again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from plexica.kit.ports import free_port
from tests.plugins.conftest import TenantFactory
from tests.support.tokens import StaticIssuers

PLEXICA = [sys.executable, "-m", "plexica.cli"]


def _until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}; dev log:\n{log.read_text()}"
        time.sleep(0.1)


async def test_dev_loop_reloads_and_survives_a_syntax_error(
    tmp_path: Path,
    database_url: str,
    jwks_base: str,
    issuers: StaticIssuers,
    make_tenant: TenantFactory,
) -> None:
    root = tmp_path / "devdemo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    subprocess.run(
        [*PLEXICA, "plugin", "new", "devdemo", "--dir", str(root)], env=env, check=True, timeout=60
    )
    tenant = await make_tenant()
    token = issuers.token(
        tenant.ref.realm,
        roles=["member"],
        tenant_id=str(tenant.id),
        iss=f"{jwks_base}/{tenant.ref.realm}",
    )
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    env.update(PLEXICA_DATABASE_URL=database_url, PLEXICA_PLUGIN_ISSUER_BASE_URL=jwks_base)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *PLEXICA,
                "plugin",
                "dev",
                str(root),
                "--tenant",
                tenant.ref.slug,
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    http = httpx.Client(base_url=url, headers=headers, timeout=2.0)

    def names() -> list[str] | None:
        try:
            r = http.get("/v1/items")
        except httpx.HTTPError:
            return None
        return [i["name"] for i in r.json()] if r.status_code == 200 else None

    try:
        _until(lambda: names() == [], 60, "never served the installed plugin", log)
        # Said once the install has returned, which is after its commit: the plugin may serve first.
        _until(lambda: b"is active in tenant" in log.read_bytes(), 20, "never said active", log)
        assert http.post("/v1/items", json={"name": "first"}).status_code == 201
        assert names() == ["first"]

        app_py = root / "src" / "plexica_devdemo" / "app.py"
        original = app_py.read_text()
        edited = original.replace(
            'text("SELECT id::text, name FROM devdemo_items ORDER BY id")',
            'text("SELECT id::text, upper(name) AS name FROM devdemo_items ORDER BY id")',
        )
        assert edited != original
        app_py.write_text(edited)
        started = time.monotonic()
        _until(lambda: names() == ["FIRST"], 20, "the edit was not served", log)
        reload_seconds = time.monotonic() - started
        assert b"changed: src/plexica_devdemo/app.py; reloading devdemo" in log.read_bytes()

        app_py.write_text(edited + "\ndef broken(:\n")
        _until(lambda: b"SyntaxError" in log.read_bytes(), 20, "no syntax error shown", log)
        _until(lambda: b"exit code" in log.read_bytes(), 20, "the failure was not reported", log)
        assert proc.poll() is None, "the dev loop died on a syntax error"
        assert names() is None

        app_py.write_text(edited)
        _until(lambda: names() == ["FIRST"], 20, "the fix was not served", log)
        assert proc.poll() is None

        # A new version with a migration: registered and upgraded in the tenant by the loop.
        (root / "migrations" / "0002_note.sql").write_text(
            "ALTER TABLE devdemo_items ADD COLUMN note text;\n"
        )
        manifest = root / "plexica-plugin.yaml"
        manifest.write_text(manifest.read_text().replace("version: 0.1.0", "version: 0.2.0"))
        _until(
            lambda: b"devdemo 0.2.0 is active in tenant" in log.read_bytes(),
            30,
            "the new version was not installed",
            log,
        )
        assert names() == ["FIRST"]
        print(f"reload after an edit served in {reload_seconds:.2f} s")
    finally:
        http.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    assert b"devdemo stopped" in log.read_bytes()
    # The child went with it.
    try:
        httpx.get(f"{url}/health", timeout=1.0)
        raise AssertionError("the plugin process outlived `plexica plugin dev`")
    except httpx.HTTPError:
        pass


def test_dev_finds_a_plugin_by_folder_or_slug(tmp_path: Path) -> None:
    from plexica.plugins.dev import DevError, child_env, find_source
    from tests.plugins.conftest import CRM_DIR

    crm = find_source("crm")
    assert (crm.root, crm.factory, crm.plugin_id) == (
        CRM_DIR.resolve(),
        "plexica_crm.app:create_app",
        "crm",
    )
    assert find_source(str(CRM_DIR)).factory == crm.factory
    with pytest.raises(DevError, match="neither a folder nor an installed plugin"):
        find_source("nosuchplugin")
    with pytest.raises(DevError, match="cannot read"):
        find_source(str(tmp_path))
    # The child never gets the platform's credentials.
    env = child_env(
        {"PLEXICA_DATABASE_URL": "postgresql://platform", "PLEXICA_PLUGIN_AUDIENCE": "a", "X": "1"},
        crm,
        {"PLEXICA_PLUGIN_DATABASE_URL": "postgresql://plugin"},
    )
    assert "PLEXICA_DATABASE_URL" not in env
    assert env["PLEXICA_PLUGIN_AUDIENCE"] == "a"
    assert env["X"] == "1"

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    r = subprocess.run(
        [*PLEXICA, "plugin", "dev", "nosuchplugin"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "neither a folder nor an installed plugin" in r.stderr
    r = subprocess.run(
        [*PLEXICA, "plugin", "dev", str(CRM_DIR), "--once"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--tenant is required" in r.stderr
