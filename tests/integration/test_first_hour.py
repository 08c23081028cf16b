"""The first hour with the CLI, with real processes: ``plexica up`` has the shipped plugins in its
catalog; every command finds the running ``up`` through ``PLEXICA_DATA_DIR`` alone; a tenant made
by the CLI signs in at ``up``'s URL, and still does after a restart on another port; a command
with no platform to talk to says so in one line (exit code 2)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from plexica.kit.ports import free_port
from tests.integration.test_cli import PLEXICA, clean_env, data_dir, start, stop, wait_ready

__all__ = ["data_dir"]


def cli(args: list[str], env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*PLEXICA, *args], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == code, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def items(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    found: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return found


def sign_in_page(base: str, realm: str, shell: str | None = None) -> httpx.Response:
    """The provider's sign-in page as the web shell at ``shell`` (default ``base``) asks."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "response_type": "code", "client_id": "plexica-web",
            "redirect_uri": f"{shell or base}/auth/callback", "scope": "openid", "state": "s",
            "code_challenge": challenge, "code_challenge_method": "S256",
        }
    )  # fmt: skip
    return httpx.get(f"{base}/realms/{realm}/protocol/openid-connect/auth?{query}", timeout=30)


def test_no_platform_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = clean_env(PLEXICA_DATA_DIR=str(tmp_path / "nothing"))
    for args in (["tenant", "list"], ["plugin", "install", "crm", "--tenant", "acme"],
                 ["flag", "list"], ["events", "dead-letters", "list"],
                 ["backup", "tenant", "acme", "--out", str(tmp_path / "a.tar")]):  # fmt: skip
        r = cli(args, env, code=2)
        assert r.stderr.count("\n") == 1, r.stderr
        assert "./plexica up" in r.stderr
        assert "Traceback" not in r.stderr
    r = cli(["tenant", "list", "--url", "not-a-url"], env, code=2)
    assert "--url" in r.stderr
    # A data dir that exists but where no `up` runs (a wrong --data-dir, or `up` stopped).
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    r = cli(["tenant", "list", "--data-dir", str(stopped)], env, code=2)
    assert r.stderr.count("\n") == 1, r.stderr
    assert f"no running Plexica in {stopped}" in r.stderr


@pytest.mark.slow
def test_first_hour_with_the_cli(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    env = clean_env(PLEXICA_DATA_DIR=str(data_dir))
    try:
        wait_ready(port, up, timeout=180)
        catalog = json.loads(cli(["plugin", "list", "--json"], env).stdout)
        assert {(v["plugin_id"], v["status"]) for v in catalog} >= {
            ("crm", "published"),
            ("billing", "published"),
        }
        table = cli(["plugin", "list"], env).stdout.splitlines()
        assert table[0].split()[:3] == ["PLUGIN_ID", "VERSION", "STATUS"]

        cli(["tenant", "create", "acme", "--name", "Acme", "--admin-email", "a@acme.test"], env)
        cli(["plugin", "install", "crm", "--tenant", "acme"], env)
        shown = cli(["tenant", "show", "acme"], env).stdout.splitlines()
        # Aligned: every value of the key-value block starts in the same column.
        block = shown[: shown.index("")]
        assert len({len(line) - len(line.split(":", 1)[1].lstrip()) for line in block}) == 1
        assert sign_in_page(base, "plexica-acme").status_code == 200

        password = cli(["user", "reset-password", "a@acme.test", "--tenant", "acme"], env)
        token = cli(
            ["token", "--tenant", "acme", "--user", "a@acme.test"],
            {**env, "PLEXICA_PASSWORD": password.stdout.strip()},
        ).stdout.strip()
        contacts = httpx.get(
            f"{base}/api/plugins/crm/v1/contacts",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert contacts.status_code == 200, contacts.text

        # The commands that used to ignore a running `up`.
        cli(["flag", "create", "first-hour.demo"], env)
        assert "first-hour.demo" in cli(["flag", "list"], env).stdout
        assert cli(["events", "dead-letters", "list"], env).stdout.strip() == "no dead letters"
        creds = json.loads(cli(["plugin", "credentials", "crm", "--json"], env).stdout)
        assert creds["role"]
        archive = tmp_path / "acme.tar"
        cli(["backup", "tenant", "acme", "--out", str(archive)], env)
        # It reaches the running platform's database: acme is there, so it refuses.
        refused = cli(["restore", "tenant", str(archive), "--as", "acme"], env, code=1)
        assert "tenant_exists" in refused.stderr
    finally:
        stop(up)

    # Another port: the shipped plugins are not registered twice, and acme still signs in.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    try:
        wait_ready(port, up, timeout=180)
        again = json.loads(cli(["plugin", "list", "--json"], env).stdout)
        assert sorted((v["plugin_id"], v["version"]) for v in again) == sorted(
            (v["plugin_id"], v["version"]) for v in catalog
        )
        assert sign_in_page(base, "plexica-acme").status_code == 200
        unknown = sign_in_page(base, "plexica-acme", "http://127.0.0.1:1")
        assert unknown.status_code != 200  # only addresses the platform answered at
    finally:
        output = stop(up)
    assert up.returncode == 0, output


@pytest.mark.slow
def test_up_demo_makes_a_tenant_with_sample_data(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [*PLEXICA, "up", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while "Demo tenant ready" not in log.read_text():
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            assert "demo: not created" not in log.read_text(), log.read_text()
            time.sleep(0.5)
        found = re.search(r"sign in as (\S+) with password (\S+)", log.read_text())
        assert found is not None
        env = clean_env(PLEXICA_DATA_DIR=str(data_dir), PLEXICA_PASSWORD=found.group(2))
        token = cli(["token", "--tenant", "demo", "--user", found.group(1)], env).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        contacts = items(httpx.get(f"{base}/api/plugins/crm/v1/contacts", headers=auth, timeout=30))
        assert {c["last_name"] for c in contacts} == {"Lovelace", "Scorpio"}
        customers = httpx.get(f"{base}/api/plugins/billing/v1/customers", headers=auth, timeout=30)
        assert [c["name"] for c in items(customers)] == ["Acme Corp"]
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert up.returncode == 0, log.read_text()
