"""Realm signing keys at rest and their rotation (ADR 0150, 0151), on the real core and database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text

from plexica.identity import custody, key_repository, mfa, mfa_repository, sealed, service, signing
from plexica.identity.client import LoginError, password_login
from plexica.identity.keys import generate
from plexica.identity.service import CLI_CLIENT
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica_sdk.errors import ConflictError
from tests.identity.conftest import Live, bearer, login, provision, set_password, wait_until
from tests.integration.test_cli import clean_env

PLEXICA = [sys.executable, "-m", "plexica.cli"]
OTHER_KEY = "another-key-encryption-key-0123456789abcdef"


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, without blocking the event loop of the activity."""
    proc = await asyncio.create_subprocess_exec(
        *PLEXICA, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def published_kids(http: httpx.AsyncClient, live: Live, realm: str) -> set[str]:
    certs = await http.get(live.issuer(realm) + "/protocol/openid-connect/certs")
    assert certs.status_code == 200
    return {k["kid"] for k in certs.json()["keys"]}


async def test_key_rows_hold_no_plaintext_private_material(live: Live, db: Database) -> None:
    tenant = await provision(db, live)
    async with db.session() as session:
        await signing.rotate(session, tenant.realm)
        rows = (await session.execute(text("SELECT t::text FROM platform.realm_keys t"))).scalars()
        stored = list(rows)
        mine = await key_repository.of_realm(session, tenant.realm)
    assert stored
    assert not [r for r in stored if "PRIVATE KEY" in r]
    assert len(mine) == 2
    for row in mine:
        assert row.private_pem is None
        assert row.sealed_key is not None
        assert row.sealed_with == custody.ring().primary
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(row.public_jwk)
        # The sealed material is the private half of the published key, and appears nowhere.
        pem = custody.ring().open(row.sealed_key, row.sealed_with)
        private: Any = serialization.load_pem_private_key(pem.encode(), None)
        jwk = RSAAlgorithm.to_jwk(private, as_dict=True)
        assert jwk["n"] == row.public_jwk["n"]
        assert not [r for r in stored if jwk["d"] in r or jwk["p"] in r or pem[40:80] in r]


async def test_plaintext_keys_of_an_older_release_are_sealed_at_start_up(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    legacy = generate()
    async with db.session() as session:  # as release N-1 wrote it: plaintext, and signing
        await session.execute(
            text("DELETE FROM platform.realm_keys WHERE realm = :realm"), {"realm": tenant.realm}
        )
        await session.execute(
            text(
                "INSERT INTO platform.realm_keys (kid, realm, status, private_pem, public_jwk)"
                " VALUES (:kid, :realm, 'active', :pem, CAST(:jwk AS jsonb))"
            ),
            {
                "kid": legacy.kid,
                "realm": tenant.realm,
                "pem": legacy.private_pem,
                "jwk": json.dumps(legacy.public_jwk),
            },
        )
    password = await set_password(db, tenant.realm, tenant.admin_email)
    before = await login(http, live, tenant.realm, tenant.admin_email, password)
    assert kid_of(before) == legacy.kid

    assert await signing.prepare(db) >= 1
    async with db.session() as session:
        (row,) = await key_repository.of_realm(session, tenant.realm)
    assert row.private_pem is None
    assert row.sealed_key is not None
    assert legacy.private_pem not in row.sealed_key
    signing._PRIVATE_KEYS.pop(legacy.kid, None)
    after = await login(http, live, tenant.realm, tenant.admin_email, password)
    assert kid_of(after) == legacy.kid
    assert (await http.get(live.url + "/v1/me", headers=bearer(before))).status_code == 200


async def test_with_the_wrong_ring_the_provider_refuses_to_sign(
    live: Live, db: Database, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    monkeypatch.setattr(custody, "_ring", custody.KeyRing.parse(OTHER_KEY))
    monkeypatch.setattr(signing, "_PRIVATE_KEYS", {})
    with pytest.raises(LoginError, match="the realm cannot sign tokens"):
        await login(http, live, tenant.realm, tenant.admin_email, password)


def test_serve_core_refuses_to_start_without_the_key_or_with_a_wrong_one(
    live: Live, database_url: str
) -> None:
    def serve(key: str | None) -> subprocess.CompletedProcess[str]:
        env = clean_env(PLEXICA_DATABASE_URL=database_url)
        env.pop(custody.ENV, None)
        if key is not None:
            env[custody.ENV] = key
        return subprocess.run(
            [*PLEXICA, "serve", "core"], env=env, capture_output=True, text=True, timeout=120
        )

    for key, expected in [
        (None, "PLEXICA_KEY_ENCRYPTION_KEY is required by `plexica serve core`"),
        (OTHER_KEY, "cannot be opened with PLEXICA_KEY_ENCRYPTION_KEY"),
        ("short", "PLEXICA_KEY_ENCRYPTION_KEY is too short"),
    ]:
        r = serve(key)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert expected in lines[0]


def test_plexica_up_refuses_to_start_with_a_wrong_key(
    live: Live, database_url: str, tmp_path: Any
) -> None:
    env = clean_env(PLEXICA_DATABASE_URL=database_url, PLEXICA_KEY_ENCRYPTION_KEY=OTHER_KEY)
    r = subprocess.run(
        [*PLEXICA, "up", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "cannot be opened with PLEXICA_KEY_ENCRYPTION_KEY" in errors[0]


async def test_rotation_during_activity_fails_no_sign_in_and_no_token(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    first = await password_login(http, live.issuer(tenant.realm), tenant.admin_email, password)
    old_token, old_kid = str(first["access_token"]), kid_of(str(first["access_token"]))
    failures: list[str] = []
    kids_seen: list[str] = []
    stop = asyncio.Event()

    async def activity() -> None:
        while not stop.is_set():
            try:
                token = await login(http, live, tenant.realm, tenant.admin_email, password)
            except Exception as exc:
                failures.append(f"sign-in: {exc!r}")
                continue
            kids_seen.append(kid_of(token))
            for name, t in (("new", token), ("old", old_token)):
                me = await http.get(live.url + "/v1/me", headers=bearer(t))
                if me.status_code != 200:
                    failures.append(f"{name} token ({kid_of(t)}): {me.status_code} {me.text}")

    def seen(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return condition()

        return check

    running = asyncio.create_task(activity())
    try:
        await wait_until(seen(lambda: len(kids_seen) >= 2), timeout=60)
        # Published 7 s ahead: longer than the core verifier's 5 s between JWKS refetches.
        env = clean_env(PLEXICA_DATABASE_URL=str(live.settings.database_url))
        r = await cli(
            "keys", "rotate", "--tenant", tenant.slug, "--publish-ahead", "7", "--json", env=env
        )
        assert r.returncode == 0, r.stderr
        rotated = json.loads(r.stdout)
        new_kid = rotated["kid"]
        assert rotated["previous_kid"] == old_kid
        assert await published_kids(http, live, tenant.realm) == {old_kid, new_kid}

        await wait_until(seen(lambda: new_kid in kids_seen), timeout=120)
        seen_after = len(kids_seen)
        await wait_until(seen(lambda: len(kids_seen) >= seen_after + 2), timeout=60)
    finally:
        stop.set()
        await running
    assert failures == []
    assert kids_seen[-1] == new_kid
    assert old_kid in kids_seen

    # A refresh token from before the rotation gives a token of the new key.
    refreshed = await http.post(
        live.issuer(tenant.realm) + "/protocol/openid-connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": str(first["refresh_token"]),
            "client_id": CLI_CLIENT,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert kid_of(refreshed.json()["access_token"]) == new_kid
    me = await http.get(live.url + "/v1/me", headers=bearer(refreshed.json()["access_token"]))
    assert me.status_code == 200

    # The old key stays published until its last token has expired, then it is retired.
    retire_at = datetime.fromisoformat(rotated["previous_retire_at"])
    assert retire_at - signing.now() > timedelta(seconds=300)  # beyond an access token's life
    assert await published_kids(http, live, tenant.realm) == {old_kid, new_kid}
    async with db.session() as session:
        early = await signing.sweep(
            session, at=retire_at - timedelta(seconds=1), realm=tenant.realm
        )
    assert old_kid not in early.retired
    assert await published_kids(http, live, tenant.realm) == {old_kid, new_kid}
    async with db.session() as session:
        done = await signing.sweep(session, at=retire_at, realm=tenant.realm)
    assert old_kid in done.retired
    assert await published_kids(http, live, tenant.realm) == {new_kid}
    token = await login(http, live, tenant.realm, tenant.admin_email, password)
    assert (await http.get(live.url + "/v1/me", headers=bearer(token))).status_code == 200


async def test_keys_list_shows_the_signing_key_and_one_rotation_at_a_time(
    live: Live, db: Database
) -> None:
    tenant = await provision(db, live)
    async with db.session() as session:
        old = signing.signing_row(await key_repository.of_realm(session, tenant.realm),
                                      signing.now())  # fmt: skip
        assert old is not None
    env = clean_env(PLEXICA_DATABASE_URL=str(live.settings.database_url))
    r = await cli("keys", "rotate", "--tenant", tenant.slug, "--json", env=env)  # 120 s ahead
    assert r.returncode == 0, r.stderr
    new_kid = json.loads(r.stdout)["kid"]
    listed = await cli("keys", "list", "--tenant", tenant.slug, "--json", env=env)
    states = {k["kid"]: k["state"] for k in json.loads(listed.stdout)}
    assert states == {old.kid: "signing", new_kid: "published"}
    r = await cli("keys", "rotate", "--tenant", tenant.slug, env=env)
    assert r.returncode == 1
    assert "a rotation is under way" in r.stderr


async def test_retire_calls_off_a_rotation_or_unpublishes_a_leaked_key(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    async with db.session() as session:
        first = await signing.rotate(session, tenant.realm)  # 120 s ahead
    assert first.previous_kid is not None
    async with db.session() as session:
        with pytest.raises(ConflictError, match="signs now"):
            await signing.retire_now(session, tenant.realm, first.previous_kid)
    async with db.session() as session:  # called off: the signing key is no longer retiring
        await signing.retire_now(session, tenant.realm, first.kid)
    assert await published_kids(http, live, tenant.realm) == {first.previous_kid}
    async with db.session() as session:
        swept = await signing.sweep(
            session, at=signing.now() + timedelta(days=1), realm=tenant.realm
        )
    assert swept.retired == []

    async with db.session() as session:  # after a leak: the new key signs at once ...
        second = await signing.rotate(session, tenant.realm, publish_ahead=timedelta(0))
    env = clean_env(PLEXICA_DATABASE_URL=str(live.settings.database_url))
    assert second.previous_kid == first.previous_kid
    # After `--`: a kid made before kids began with their random part may start with "-".
    r = await cli("keys", "retire", "--tenant", tenant.slug, "--", second.previous_kid, env=env)
    assert r.returncode == 0, r.stderr  # ... and the leaked one leaves the JWKS now
    assert await published_kids(http, live, tenant.realm) == {second.kid}


async def test_re_encrypt_moves_every_key_to_the_first_secret(live: Live, db: Database) -> None:
    tenant = await provision(db, live)
    # A TOTP secret is sealed with the same ring, and moves with the keys.
    async with db.session() as session:
        user = await service.create_user(session, tenant.realm, "totp@x.example", None, ["member"])
        await mfa.begin(session, user.id, user.email, "x")
    url = str(live.settings.database_url)
    tests_key = os.environ[custody.ENV]
    new_id = custody.KeyRing.parse(OTHER_KEY).primary

    async def sealed_with(key: str) -> set[str | None]:
        r = await cli("keys", "list", "--all", "--json", env=clean_env(
            PLEXICA_DATABASE_URL=url, PLEXICA_KEY_ENCRYPTION_KEY=key))  # fmt: skip
        assert r.returncode == 0, r.stderr
        return {k["sealed_with"] for k in json.loads(r.stdout)}

    assert await sealed_with(tests_key) == {custody.ring().primary}
    try:
        ring = f"{OTHER_KEY},{tests_key}"  # the new secret first, the old one still opens
        r = await cli("keys", "re-encrypt", env=clean_env(
            PLEXICA_DATABASE_URL=url, PLEXICA_KEY_ENCRYPTION_KEY=ring))  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"sealed with key id {new_id}" in r.stdout
        assert await sealed_with(OTHER_KEY) == {new_id}
        async with db.session() as session:
            assert await signing.reseal(session, all_keys=False) == 0
            with pytest.raises(custody.KeyCustodyError):
                await signing.verify_ring(session)  # the tests' key alone no longer opens them
            totp = await mfa_repository.sealed_secrets.rows(session)
        assert {r["sealed_with"] for r in totp} == {new_id}
        with pytest.raises(custody.KeyCustodyError):
            await sealed.prepare(db)  # start-up stops
    finally:  # the other tests of this database sign with the tests' key
        back = f"{tests_key},{OTHER_KEY}"
        r = await cli("keys", "re-encrypt", env=clean_env(
            PLEXICA_DATABASE_URL=url, PLEXICA_KEY_ENCRYPTION_KEY=back))  # fmt: skip
        assert r.returncode == 0, r.stderr
    async with db.session() as session:
        await signing.verify_ring(session)
