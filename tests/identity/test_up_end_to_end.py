"""The issue's path on the embedded default, with real processes: `plexica up`, the first
operator signs in through the browser flow, a tenant realm is provisioned, its admin gets a
password and a token from the CLI and calls ``GET /api/core/v1/me``."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.client import password_login
from plexica.identity.names import CREDENTIALS_FILE
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.provisioning import TenantRef
from plexica.settings import Settings
from tests.identity.conftest import register_tenant
from tests.integration.test_cli import PLEXICA, clean_env, data_dir, start, stop, wait_ready

__all__ = ["data_dir"]


@pytest.mark.slow
def test_operator_and_tenant_admin_sign_in_on_plexica_up(data_dir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    try:
        wait_ready(port, proc)
        saved = data_dir / CREDENTIALS_FILE
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        operator = json.loads(saved.read_text())
        tenant = TenantRef(uuid.uuid4(), "acme", "Acme", "boss@acme.example")

        async def browser_and_provision() -> dict[str, object]:
            async with httpx.AsyncClient(timeout=15) as http:
                body = await password_login(
                    http, f"{base}/realms/plexica-platform", operator["email"], operator["password"]
                )
                me = await http.get(
                    f"{base}/api/core/v1/me",
                    headers={"Authorization": f"Bearer {body['access_token']}"},
                )
            url = json.loads((data_dir / "runtime.json").read_text())["database_url"]
            db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=1)
            try:
                await register_tenant(db, tenant)
                await RealmStep(BuiltinIdentity(db, base), db).apply(tenant)
            finally:
                await db.dispose()
            return dict(me.json())

        me = asyncio.run(browser_and_provision())
        assert me["is_operator"] is True
        assert me["email"] == "admin@plexica.local"

        env = clean_env()
        env["PLEXICA_DATA_DIR"] = str(data_dir)
        reset = subprocess.run(
            [*PLEXICA, "user", "reset-password", "--tenant", "acme", tenant.admin_email],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert reset.returncode == 0, reset.stderr
        env.update(PLEXICA_PUBLIC_URL=base, PLEXICA_PASSWORD=reset.stdout.strip())
        issued = subprocess.run(
            [*PLEXICA, "token", "--tenant", "acme", "--user", tenant.admin_email],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        admin = httpx.get(
            f"{base}/api/core/v1/me",
            headers={"Authorization": f"Bearer {issued.stdout.strip()}"},
        ).json()
        assert admin["tenant_slug"] == "acme"
        assert admin["roles"] == ["tenant_admin"]
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert "First operator: admin@plexica.local" in out
    # Printed once in the banner, nowhere in the logs.
    assert out.count(operator["password"]) == 1
