"""The embedded gateway serves the provider at ``/realms``; the CLI signs in through it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from plexica.app import create_app
from plexica.cli.main import app as cli
from plexica.gateway.embedded import create_edge_app
from plexica.identity.bootstrap import bootstrap
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.client import password_login
from plexica.identity.names import CREDENTIALS_FILE
from plexica.identity.service import OPERATOR_REALM
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica.web.app import create_web_app
from tests.conftest import running
from tests.identity.conftest import Live, new_tenant, provision, register_tenant, set_password
from tests.support.totp import code_at, next_code

PUBLIC = "http://testserver"


@pytest.fixture
async def edge(database_url: str, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=database_url, public_url=PUBLIC)
    core = create_app(settings, db=db)
    edge_app = create_edge_app(core, create_web_app(settings), plugins={})
    # JWKS over HTTP, through the edge itself, without a socket.
    state_of(core).jwks_transport = httpx.ASGITransport(app=edge_app)
    async for client in running(edge_app):
        yield client


async def test_browser_flow_through_the_edge(
    edge: httpx.AsyncClient, db: Database, tmp_path: Path
) -> None:
    operator = await bootstrap(db, PUBLIC, "root@edge.example", tmp_path)
    if operator is None:  # the realm already has its operator from another test
        operator_email = "root@edge.example"
        await BuiltinIdentity(db, PUBLIC).create_user(
            OPERATOR_REALM, operator_email, "operator-password-1", frozenset({"super_admin"})
        )
        password = "operator-password-1"
    else:
        operator_email, password = operator.email, operator.password
        saved = tmp_path / CREDENTIALS_FILE
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert json.loads(saved.read_text())["password"] == password

    disc = (await edge.get(f"/realms/{OPERATOR_REALM}/.well-known/openid-configuration")).json()
    assert disc["issuer"] == f"{PUBLIC}/realms/{OPERATOR_REALM}"
    op = await password_login(edge, disc["issuer"], operator_email, password)
    me = await edge.get(
        "/api/core/v1/me", headers={"Authorization": f"Bearer {op['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["is_operator"] is True

    tenant = new_tenant("edge")
    await register_tenant(db, tenant)
    await RealmStep(BuiltinIdentity(db, PUBLIC), db).apply(tenant)
    admin_password = await set_password(db, tenant.realm, tenant.admin_email)
    body = await password_login(
        edge, f"{PUBLIC}/realms/{tenant.realm}", tenant.admin_email, admin_password
    )
    me = await edge.get(
        "/api/core/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["tenant_slug"] == tenant.slug
    assert me.json()["roles"] == ["tenant_admin"]


async def test_realm_step_is_idempotent_and_undone(live: Live, db: Database) -> None:
    step = RealmStep(BuiltinIdentity(db, live.url), db)
    tenant = await provision(db, live)
    await step.apply(tenant)  # a retry after a crash
    users = await BuiltinIdentity(db, live.url).list_users(tenant.realm)
    assert [(u.email, u.roles) for u in users] == [
        (tenant.admin_email, frozenset({"tenant_admin"}))
    ]
    await step.undo(tenant)
    await step.undo(tenant)
    async with httpx.AsyncClient() as http:
        gone = await http.get(live.issuer(tenant.realm) + "/.well-known/openid-configuration")
    assert gone.status_code == 404


def _answer(output: str, pattern: str) -> str:
    """The CLI's answer among the live server's log lines, which share this process's output
    and may be written after it."""
    lines = [line for line in output.splitlines() if re.fullmatch(pattern, line.strip())]
    assert len(lines) == 1, output
    return lines[0].strip()


def test_cli_reset_password_and_token(live: Live, database_url: str) -> None:
    tenant = new_tenant("cli")

    async def setup() -> None:
        db = Database(Settings(database_url=database_url).sqlalchemy_url, pool_size=1)
        try:
            await RealmStep(BuiltinIdentity(db, live.url), db).apply(tenant)
        finally:
            await db.dispose()

    asyncio.run(setup())
    env = {"PLEXICA_DATABASE_URL": database_url}
    runner = CliRunner()
    reset = runner.invoke(
        cli, ["user", "reset-password", "--tenant", tenant.slug, tenant.admin_email], env=env
    )
    assert reset.exit_code == 0, reset.output
    password = _answer(reset.output, r"[A-Za-z0-9_-]{20,}")
    assert len(password) >= 20

    missing = runner.invoke(
        cli, ["user", "reset-password", "--tenant", tenant.slug, "nobody@x.example"], env=env
    )
    assert missing.exit_code == 1
    assert "no such user" in missing.output

    env = {"PLEXICA_PUBLIC_URL": live.url, "PLEXICA_PASSWORD": password}
    issued = runner.invoke(
        cli, ["token", "--tenant", tenant.slug, "--user", tenant.admin_email], env=env
    )
    assert issued.exit_code == 0, issued.output
    token = _answer(issued.output, r"[\w-]+\.[\w-]+\.[\w-]+")
    me = httpx.get(live.url + "/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["email"] == tenant.admin_email

    # With two-step verification on, the code comes from PLEXICA_OTP (ADR 0232).
    mine = {"Authorization": f"Bearer {token}"}
    secret = httpx.post(live.url + "/v1/me/mfa/totp", headers=mine).json()["secret"]
    on = httpx.post(
        live.url + "/v1/me/mfa/totp/confirm", headers=mine, json={"code": code_at(secret)}
    )
    assert on.status_code == 200, on.text
    issued = runner.invoke(
        cli, ["token", "--tenant", tenant.slug, "--user", tenant.admin_email],
        env={**env, "PLEXICA_OTP": next_code(secret)},
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    assert _answer(issued.output, r"[\w-]+\.[\w-]+\.[\w-]+")

    env["PLEXICA_PASSWORD"] = "wrong-password"
    refused = runner.invoke(
        cli, ["token", "--tenant", tenant.slug, "--user", tenant.admin_email], env=env
    )
    assert refused.exit_code == 1
    assert "Invalid email or password" in refused.output
    assert os.environ.get("PLEXICA_PASSWORD") is None


async def test_builtin_provider_is_off_when_keycloak_is_the_provider(
    database_url: str, db: Database
) -> None:
    settings = Settings(
        database_url=database_url,
        keycloak_url="http://127.0.0.1:1",
        keycloak_admin_user="admin",
        keycloak_admin_password="not-used",
    )
    async for client in running(create_app(settings, db=db)):
        answer = await client.get(f"/realms/{OPERATOR_REALM}/.well-known/openid-configuration")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
