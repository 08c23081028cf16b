"""Service clients of the built-in provider: create, disable, enable, rotate, revoke; tokens
issued before each cut-off are refused by verification from then on (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from plexica.cli.main import app as main
from plexica.identity.bootstrap import OperatorCredentials
from plexica.identity.jwks import build_verifier
from plexica.identity.revocation import core_revocations
from plexica.identity.service import OPERATOR_REALM
from plexica.kit.db import Database
from plexica_sdk.client import ClientCredentials, CoreClient
from plexica_sdk.errors import PlexicaError, UnauthenticatedError
from tests.identity.conftest import Live, bearer, login, provision, set_password, wait_until

API = "/v1/service-clients"


async def _tenant_admin(live: Live, db: Database, http: httpx.AsyncClient) -> dict[str, str]:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    return bearer(await login(http, live, tenant.realm, tenant.admin_email, password))


async def _token(http: httpx.AsyncClient, made: dict[str, Any], secret: str) -> httpx.Response:
    return await http.post(
        made["token_url"],
        data={"grant_type": "client_credentials"},
        auth=(made["client"]["client_id"], secret),
    )


async def _service_token(http: httpx.AsyncClient, made: dict[str, Any], secret: str) -> str:
    got = await _token(http, made, secret)
    assert got.status_code == 200, got.text
    return str(got.json()["access_token"])


async def test_lifecycle_cuts_off_tokens_issued_before(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    admin = await _tenant_admin(live, db, http)
    garbage = await http.get(live.url + "/v1/me", headers=bearer("x.y.z"))
    assert garbage.status_code == 401

    created = await http.post(
        live.url + API,
        headers=admin,
        json={"client_id": "svc-reports", "roles": ["member"], "description": "nightly"},
    )
    assert created.status_code == 201, created.text
    made = created.json()
    first_secret = made.pop("secret")
    assert made["client"]["state"] == "active"
    assert made["client"]["revoked_before"] == 0
    token = await _service_token(http, made, first_secret)
    me = (await http.get(live.url + "/v1/me", headers=bearer(token))).json()
    assert (me["is_service"], me["client_id"], me["roles"]) == (True, "svc-reports", ["member"])

    # Only a hash of the secret is kept, and never in the registry or the audit log.
    async with db.session() as s:
        stored = (
            await s.execute(
                text("SELECT secret_hash FROM platform.clients WHERE client_id = 'svc-reports'")
            )
        ).scalar_one()
        dumps = " ".join(
            str(r[0])
            for r in await s.execute(
                text(
                    "SELECT row_to_json(c)::text FROM platform.service_clients c UNION ALL"
                    " SELECT row_to_json(a)::text FROM platform.audit_log a"
                )
            )
        )
    assert stored == hashlib.sha256(first_secret.encode()).hexdigest()
    assert first_secret not in dumps

    # Disable: the token already issued is refused with the body of any bad token; no new one.
    disabled = await http.post(live.url + f"{API}/svc-reports/disable", headers=admin)
    assert disabled.json()["state"] == "disabled"
    refused = await http.get(live.url + "/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json() == garbage.json()
    assert (await _token(http, made, first_secret)).json()["error"] == "invalid_client"

    # Enable: new tokens work, the old one stays refused.
    enabled = await http.post(live.url + f"{API}/svc-reports/enable", headers=admin)
    assert enabled.json()["state"] == "active"
    assert (await http.get(live.url + "/v1/me", headers=bearer(token))).status_code == 401
    second = await _service_token(http, made, first_secret)
    assert (await http.get(live.url + "/v1/me", headers=bearer(second))).status_code == 200

    # Rotate: the old secret and the tokens it got stop working; the new secret works at once.
    rotated = await http.post(live.url + f"{API}/svc-reports/rotate-secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != first_secret
    assert (await _token(http, made, first_secret)).json()["error"] == "invalid_client"
    assert (await http.get(live.url + "/v1/me", headers=bearer(second))).status_code == 401
    third = await _service_token(http, made, new_secret)
    assert (await http.get(live.url + "/v1/me", headers=bearer(third))).status_code == 200

    # Revoke: gone from the provider, its tokens refused, kept on record; idempotent.
    revoked = await http.delete(live.url + f"{API}/svc-reports", headers=admin)
    assert revoked.json()["state"] == "revoked"
    assert (await http.get(live.url + "/v1/me", headers=bearer(third))).status_code == 401
    assert (await _token(http, made, new_secret)).json()["error"] == "invalid_client"
    again = await http.delete(live.url + f"{API}/svc-reports", headers=admin)
    assert again.json() == revoked.json()
    gone = await http.post(live.url + f"{API}/svc-reports/enable", headers=admin)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "service_client_not_found"
    listed = (await http.get(live.url + API, headers=admin)).json()
    assert [(c["client_id"], c["state"]) for c in listed] == [("svc-reports", "revoked")]

    audit = (await http.get(live.url + "/v1/audit", headers=admin, params={"limit": 20})).json()[
        "items"
    ]
    actions = [e["action"] for e in audit if e["target"] == "service_client:svc-reports"]
    assert actions == [
        "identity.service_client.revoked",
        "identity.service_client.secret_rotated",
        "identity.service_client.enabled",
        "identity.service_client.disabled",
        "identity.service_client.created",
    ]

    # Made again after revocation: a fresh client; tokens of the old one stay refused.
    remade = await http.post(live.url + API, headers=admin, json={"client_id": "svc-reports"})
    assert remade.status_code == 201
    fresh = await _service_token(http, remade.json(), remade.json()["secret"])
    assert (await http.get(live.url + "/v1/me", headers=bearer(fresh))).status_code == 200
    assert (await http.get(live.url + "/v1/me", headers=bearer(third))).status_code == 401


async def test_bad_input_and_isolation(live: Live, db: Database, http: httpx.AsyncClient) -> None:
    admin = await _tenant_admin(live, db, http)
    other = await _tenant_admin(live, db, http)
    made = await http.post(live.url + API, headers=admin, json={"client_id": "svc-sync"})
    assert made.status_code == 201

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"client_id": "svc-sync"}, 409, "service_client_exists"),
        ({"client_id": "plexica-web"}, 422, "reserved_client_id"),
        ({"client_id": "admin-cli"}, 422, "reserved_client_id"),
        ({"client_id": "Bad Id"}, 422, "validation_error"),
        ({"client_id": "svc-x", "roles": ["super_admin"]}, 422, "invalid_input"),
    ]
    for body, status, code in cases:
        r = await http.post(live.url + API, headers=admin, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)

    # Another tenant's admin neither sees nor touches it: the same 404 as an unknown client.
    assert (await http.get(live.url + API, headers=other)).json() == []
    for path in ("/svc-sync/disable", "/svc-sync/rotate-secret", "/nope/disable"):
        r = await http.post(live.url + API + path, headers=other)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "service_client_not_found"

    # A service token cannot manage service clients (no permission, and no realm of a user).
    token = await _service_token(http, made.json(), made.json()["secret"])
    assert (await http.get(live.url + API, headers=bearer(token))).status_code == 403


async def test_operator_clients_and_other_replicas(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    op = bearer(await login(http, live, OPERATOR_REALM, operator.email, operator.password))
    made = await http.post(live.url + API, headers=op, json={"client_id": "ops-backup"})
    assert made.status_code == 201, made.text
    assert made.json()["token_url"].startswith(live.issuer(OPERATOR_REALM))
    token = await _service_token(http, made.json(), made.json()["secret"])
    me = (await http.get(live.url + "/v1/me", headers=bearer(token))).json()
    assert (me["tenant_id"], me["client_id"]) == (None, "ops-backup")

    # Another replica (its own verifier and revocation list) refuses the token once woken.
    revocations = core_revocations(db)
    await revocations.start()
    replica = build_verifier(db, live.url, http, revocations=revocations)
    assert (await replica.verify(token)).client_id == "ops-backup"
    await http.post(live.url + f"{API}/ops-backup/disable", headers=op)

    async def refused() -> bool:
        try:
            await replica.verify(token)
        except UnauthenticatedError:
            return True
        return False

    try:
        await wait_until(refused, timeout=5.0)
    finally:
        await revocations.aclose()


async def test_cli(live: Live, db: Database, http: httpx.AsyncClient, database_url: str) -> None:
    tenant = await provision(db, live)
    env = {"PLEXICA_DATABASE_URL": database_url, "PLEXICA_PUBLIC_URL": live.url}
    runner = CliRunner()

    async def cli(*args: str) -> Any:
        result = await asyncio.to_thread(
            runner.invoke, main, ["service-client", *args, "--tenant", tenant.slug, "--json"],
            env=env,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    made = await cli("create", "cli-export", "--role", "member", "--description", "exports")
    assert made["client"]["roles"] == ["member"]
    token = await _service_token(http, made, made["secret"])
    assert (await http.get(live.url + "/v1/me", headers=bearer(token))).status_code == 200
    assert [c["client_id"] for c in await cli("list")] == ["cli-export"]

    rotated = await cli("rotate-secret", "cli-export")
    assert rotated["secret"] != made["secret"]
    fresh = await _service_token(http, made, rotated["secret"])

    def refused(token: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            me = await http.get(live.url + "/v1/me", headers=bearer(token))
            return me.status_code == 401

        return check

    # The CLI is another process: the core sees its cut-offs within the cache's TTL.
    await wait_until(refused(token), timeout=10.0)
    assert (await http.get(live.url + "/v1/me", headers=bearer(fresh))).status_code == 200
    assert (await cli("revoke", "cli-export"))["state"] == "revoked"
    await wait_until(refused(fresh), timeout=10.0)
    missing = await asyncio.to_thread(
        runner.invoke, main, ["service-client", "disable", "nope", "--tenant", tenant.slug],
        env=env,
    )  # fmt: skip
    assert missing.exit_code == 1
    assert "service_client_not_found" in missing.output
    async with db.session() as s:
        actions = (
            await s.execute(
                text(
                    "SELECT action, actor FROM platform.audit_log WHERE target ="
                    " 'service_client:cli-export' AND tenant_id = :t ORDER BY seq"
                ),
                {"t": tenant.id},
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        ("identity.service_client.created", "cli"),
        ("identity.service_client.secret_rotated", "cli"),
        ("identity.service_client.revoked", "cli"),
    ]


async def test_sdk_core_client_renews_its_service_token(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    admin = await _tenant_admin(live, db, http)
    made = (await http.post(live.url + API, headers=admin, json={"client_id": "svc-sdk"})).json()
    auth = ClientCredentials(made["token_url"], "svc-sdk", made["secret"])
    core = CoreClient(live.url, None, auth=auth)
    try:
        me = await core.http.get("/v1/me")
        assert me.json()["client_id"] == "svc-sdk"
        first = await auth.token()
        assert await auth.token() == first  # reused while valid

        # Disabled and enabled again: the cached token is cut off, the client fetches another.
        await http.post(live.url + f"{API}/svc-sdk/disable", headers=admin)
        await http.post(live.url + f"{API}/svc-sdk/enable", headers=admin)
        assert (await core.http.get("/v1/me")).status_code == 200
        assert await auth.token() != first

        # Rotated: the old secret gets nothing, the caller hears why.
        await http.post(live.url + f"{API}/svc-sdk/rotate-secret", headers=admin)
        with pytest.raises(PlexicaError) as refused:
            await core.http.get("/v1/me")
        assert refused.value.code == "service_client_refused"
    finally:
        await core.aclose()
