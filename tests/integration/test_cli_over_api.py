"""The CLI against a distributed deployment: a core started as its own process, reached with
``--url`` and an operator token (``PLEXICA_TOKEN``), no database URL in the CLI's environment
(ADR 0165). Each bad way in is one line with exit code 2, never a traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from plexica.identity import service
from plexica.identity.names import OPERATOR_REALM
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica_sdk.context import SUPER_ADMIN
from tests.harness import servers
from tests.integration.test_cli import PLEXICA, clean_env, start, stop, wait_ready


def cli(args: list[str], env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*PLEXICA, *args], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == code, f"{args}: {r.stdout}\n{r.stderr}"
    return r


def one_line(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


@pytest.fixture
def core_url(database_url: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        PLEXICA_DATABASE_URL=database_url,
        PLEXICA_PORT=str(port),
        PLEXICA_PUBLIC_URL=url,
        PLEXICA_DATA_DIR=str(servers.session_dir() / f"core-{uuid.uuid4().hex[:8]}"),
    )
    proc = start(["serve", "core"], env)
    try:
        wait_ready(port, proc, timeout=120)
        yield url
    finally:
        stop(proc, signal.SIGTERM)


@pytest.fixture
async def operator_token(db: Database, core_url: str) -> str:
    email, password = f"op-{uuid.uuid4().hex[:8]}@cli.test", service.generate_password()
    async with db.session() as session:
        await service.ensure_realm(session, OPERATOR_REALM, None, core_url)
        await service.create_user(session, OPERATOR_REALM, email, password, {SUPER_ADMIN})
    # The CLI's own sign-in, with nothing but the URL: no database in its environment.
    env = clean_env(PLEXICA_PASSWORD=password)
    return cli(["token", "--user", email, "--url", core_url], env).stdout.strip()


@pytest.mark.slow
def test_commands_work_with_url_and_an_operator_token(core_url: str, operator_token: str) -> None:
    env = clean_env(PLEXICA_TOKEN=operator_token, PLEXICA_URL=core_url)
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    made = cli(["tenant", "create", slug, "--name", "Over API", "--admin-email", "a@x.test"], env)
    assert made.stdout.startswith(f"{slug}: active"), made.stdout
    listed = json.loads(cli(["tenant", "list", "--json"], env).stdout)
    assert slug in {t["slug"] for t in listed}
    shown = cli(["tenant", "show", slug], env).stdout
    assert "state:" in shown
    assert "identity_realm" in shown
    assert cli(["tenant", "suspend", slug], env).stdout.startswith(f"{slug}: suspended")
    assert cli(["tenant", "reactivate", slug], env).stdout.startswith(f"{slug}: active")

    assert isinstance(json.loads(cli(["plugin", "list", "--json"], env).stdout), list)
    assert cli(["plugin", "list", "--tenant", slug], env).stdout.strip() == "no plugins"
    key = f"cli.{uuid.uuid4().hex[:8]}"
    cli(["flag", "create", key], env)
    assert cli(["flag", "toggle", key, "--off"], env).stdout.startswith(f"{key} is off")
    assert key in cli(["flag", "list"], env).stdout

    # Service clients of the operator realm: create, disable, enable, rotate, revoke.
    client_id = f"cli-{uuid.uuid4().hex[:8]}"
    made_client = json.loads(cli(["service-client", "create", client_id, "--json"], env).stdout)
    assert made_client["client"]["client_id"] == client_id
    assert made_client["secret"]
    assert client_id in cli(["service-client", "list"], env).stdout
    listed_clients = json.loads(cli(["service-client", "list", "--json"], env).stdout)
    assert client_id in {c["client_id"] for c in listed_clients}
    assert "state: disabled" in cli(["service-client", "disable", client_id], env).stdout
    assert "state: active" in cli(["service-client", "enable", client_id], env).stdout
    rotated = json.loads(cli(["service-client", "rotate-secret", client_id, "--json"], env).stdout)
    assert rotated["secret"] != made_client["secret"]
    assert "state: revoked" in cli(["service-client", "revoke", client_id], env).stdout
    gone = cli(["service-client", "disable", client_id], env, code=1)
    one_line(gone, "service_client_not_found", "request")
    # Over the API a command acts in its token's realm: an operator's token is not a tenant's.
    one_line(
        cli(["service-client", "list", "--tenant", slug], env, code=2),
        "operator realm",
        "that tenant's admin token",
        "PLEXICA_DATABASE_URL",
    )

    # Dead letters and replays.
    nobody = ["--plugin", "p" + uuid.uuid4().hex[:8]]
    listed_letters = cli(["events", "dead-letters", "list", "--status", "all", *nobody], env)
    assert listed_letters.stdout.strip() == "no dead letters"
    assert cli(["events", "dead-letters", "list", "--json", *nobody], env).stdout == ""
    letter = str(uuid.uuid4())
    missing = cli(["events", "dead-letters", "retry", letter], env, code=1)
    one_line(missing, "dead_letter_not_found", "request")
    cli(["events", "dead-letters", "discard", letter], env, code=1)
    tenant_id = json.loads(cli(["tenant", "show", slug, "--json"], env).stdout)["id"]
    one_line(cli(["events", "replay", "crm", tenant_id], env, code=1), "plugin_not_active")

    # The platform's refusals keep the one error shape: one line, exit code 1.
    refused = cli(["tenant", "show", "no-such-tenant"], env, code=1)
    one_line(refused, "tenant_not_found", "request")
    as_json = cli(["tenant", "show", "no-such-tenant", "--json"], env, code=1)
    assert json.loads(as_json.stdout)["error"]["code"] == "tenant_not_found"

    # An operator-DB command says so, and what to use instead.
    backup = cli(["backup", "tenant", slug, "--out", "/dev/null"], env, code=2)
    one_line(backup, "operator-DB", "PLEXICA_DATABASE_URL")
    # The operator's token never sets a tenant user's password (ADR 0166).
    reset = cli(["user", "reset-password", "a@x.test", "--tenant", slug], env, code=2)
    one_line(reset, "that tenant's admin token", "PLEXICA_DATABASE_URL")

    assert cli(["tenant", "delete", slug, "--yes"], env).stdout.startswith(f"{slug}: deleted")


@pytest.mark.slow
def test_a_bad_way_in_is_one_line_and_exit_code_2(core_url: str, operator_token: str) -> None:
    # An expired or forged token: the platform refuses it.
    env = clean_env(PLEXICA_TOKEN=operator_token[:-4] + "AAAA", PLEXICA_URL=core_url)
    one_line(cli(["tenant", "list"], env, code=2), "token was refused", "plexica token")
    # No token for a deployment given by URL.
    env = clean_env(PLEXICA_URL=core_url)
    one_line(cli(["tenant", "list"], env, code=2), "no operator token", "PLEXICA_TOKEN")
    # A URL where nothing answers.
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = clean_env(PLEXICA_TOKEN=operator_token, PLEXICA_URL=nowhere)
    one_line(cli(["tenant", "list"], env, code=2), "cannot reach", nowhere)


@pytest.mark.slow
async def test_a_tenant_admin_token_acts_in_its_tenant(
    db: Database, core_url: str, operator_token: str
) -> None:
    """`user reset-password` and `service-client` with --tenant go over the API with that
    tenant's admin token (ADR 0166), with no database in the CLI's environment."""
    operator = clean_env(PLEXICA_TOKEN=operator_token, PLEXICA_URL=core_url)
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    admin_email, member_email = f"admin@{slug}.test", f"bob@{slug}.test"
    cli(["tenant", "create", slug, "--name", "Realm", "--admin-email", admin_email], operator)
    realm, password = "plexica-" + slug, service.generate_password()
    async with db.session() as session:
        await service.set_password(session, realm, admin_email, password)
        await service.create_user(session, realm, member_email, password, {"member"})
    signed_in = ["token", "--tenant", slug, "--url", core_url]
    admin_token = cli(
        [*signed_in, "--user", admin_email], clean_env(PLEXICA_PASSWORD=password)
    ).stdout.strip()
    admin = clean_env(PLEXICA_TOKEN=admin_token, PLEXICA_URL=core_url)

    new = cli(["user", "reset-password", member_email.upper(), "--tenant", slug], admin)
    new_password = new.stdout.strip()
    assert new_password
    assert new_password != password
    assert new.stdout.count("\n") == 1
    token = cli([*signed_in, "--user", member_email], clean_env(PLEXICA_PASSWORD=new_password))
    assert token.stdout.strip()
    old = cli([*signed_in, "--user", member_email], clean_env(PLEXICA_PASSWORD=password), code=1)
    one_line(old, "sign-in refused")
    missing = cli(["user", "reset-password", "nobody@x.test", "--tenant", slug], admin, code=1)
    one_line(missing, "no such user")
    # Without --tenant the command means the operator realm: not this token's.
    one_line(
        cli(["user", "reset-password", member_email], admin, code=2),
        "not in the operator realm",
        "an operator token",
    )
    # Nor another tenant's.
    one_line(
        cli(["user", "reset-password", member_email, "--tenant", "other"], admin, code=2),
        "that tenant's admin token",
        "PLEXICA_DATABASE_URL",
    )

    client_id = f"svc-{uuid.uuid4().hex[:8]}"
    made = cli(["service-client", "create", client_id, "--tenant", slug, "--json"], admin)
    assert json.loads(made.stdout)["secret"]
    listed = cli(["service-client", "list", "--tenant", slug, "--json"], admin)
    assert client_id in {c["client_id"] for c in json.loads(listed.stdout)}
    assert (
        "state: revoked"
        in cli(["service-client", "revoke", client_id, "--tenant", slug], admin).stdout
    )
    # The operator realm's clients are not the tenant admin's.
    one_line(cli(["service-client", "list"], admin, code=2), "an operator token")

    # The audit log names the tenant admin who reset the password.
    async with db.session() as session:
        actors = (
            await session.execute(
                text(
                    "SELECT actor FROM platform.audit_log WHERE action ="
                    " 'identity.user.password_reset' AND actor = :a"
                ),
                {"a": admin_email},
            )
        ).scalars()
        assert list(actors) == [admin_email]
