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

from plexica.identity import service
from plexica.identity.names import OPERATOR_REALM
from plexica.kit.db import Database
from plexica.kit.pgserver import free_port
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
    # A tenant's realm is not the operator's through the API: its clients need the database.
    one_line(
        cli(["service-client", "list", "--tenant", slug], env, code=2),
        "operator-DB",
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
    # No route sets a user's password: `user reset-password` stays on the database.
    reset = cli(["user", "reset-password", "a@x.test", "--tenant", slug], env, code=2)
    one_line(reset, "operator-DB", "PLEXICA_DATABASE_URL")

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
