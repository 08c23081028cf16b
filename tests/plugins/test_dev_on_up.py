"""The developer's path on the embedded platform, with real processes: ``plexica up``, a tenant,
its admin's token from the built-in provider, then ``plexica plugin dev`` on a scaffolded plugin
that finds the running platform by itself, installs into the tenant, verifies the platform's
tokens and reloads an edit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from plexica.kit.ports import free_port
from tests.integration.test_cli import PLEXICA, clean_env, data_dir, start, stop, wait_ready

__all__ = ["data_dir"]


def _cli(args: list[str], env: dict[str, str]) -> str:
    r = subprocess.run([*PLEXICA, *args], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


@pytest.mark.slow
def test_plugin_dev_against_plexica_up(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    dev: subprocess.Popen[bytes] | None = None
    log = tmp_path / "dev.log"
    try:
        wait_ready(port, up, timeout=120)
        env = clean_env(PLEXICA_DATA_DIR=str(data_dir))
        _cli(["tenant", "create", "acme", "--name", "Acme", "--admin-email", "boss@acme.test"], env)
        password = _cli(["user", "reset-password", "--tenant", "acme", "boss@acme.test"], env)
        token = _cli(
            ["token", "--tenant", "acme", "--user", "boss@acme.test"],
            {**env, "PLEXICA_PASSWORD": password},
        )
        root = tmp_path / "notes"
        _cli(["plugin", "new", "notes", "--dir", str(root)], env)

        dev_port = free_port()
        with log.open("wb") as out:
            dev = subprocess.Popen(
                [*PLEXICA, "plugin", "dev", str(root), "--tenant", "acme", "--port", str(dev_port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        plugin = httpx.Client(
            base_url=f"http://127.0.0.1:{dev_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5.0,
        )

        def names() -> list[str] | None:
            try:
                r = plugin.get("/v1/items")
            except httpx.HTTPError:
                return None
            return [i["name"] for i in r.json()] if r.status_code == 200 else None

        def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            while not check():
                assert time.monotonic() < deadline, f"{what}:\n{log.read_text()}"
                time.sleep(0.1)

        until(lambda: names() == [], "the plugin was not served and installed", 120)
        assert plugin.post("/v1/items", json={"name": "memo"}).status_code == 201
        # Tokens are verified against the platform's realms: no token, no answer.
        assert httpx.get(f"http://127.0.0.1:{dev_port}/v1/items").status_code == 401
        # Through `plexica up`'s edge, as the API clients and the web shell reach it (ADR 0134).
        edge = httpx.get(
            f"{base}/api/plugins/notes/v1/items",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert edge.status_code == 200, edge.text
        assert [i["name"] for i in edge.json()] == ["memo"]
        # The platform knows the installation.
        listed = _cli(["plugin", "list", "--tenant", "acme", "--json"], env)
        assert '"plugin_id":"notes"' in listed.replace(" ", "")
        assert '"status":"active"' in listed.replace(" ", "")

        app_py = root / "src" / "plexica_notes" / "app.py"
        app_py.write_text(
            app_py.read_text().replace(
                'text("SELECT id::text, name FROM notes_items ORDER BY id")',
                "text(\"SELECT id::text, name || '!' AS name FROM notes_items ORDER BY id\")",
            )
        )
        until(lambda: names() == ["memo!"], "the edit was not served", 30)
        plugin.close()
    finally:
        if dev is not None:
            dev.send_signal(signal.SIGTERM)
            try:
                dev.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
                dev.wait()
        up_output = stop(up)
    assert dev is not None
    assert dev.returncode == 0, log.read_text()
    assert up.returncode == 0, up_output
    assert not list((data_dir / "dev-plugins").glob("*.json"))  # the route left with the loop
