"""Access-token verification cost per request with a warm JWKS cache.

Runs the production path: a token issued by the built-in provider (authorization code + PKCE
through its login form), verified by ``JwtVerifier`` over the realm-registry/JWKS resolver, the
cached permission resolver and the service-client cut-offs (ADR 0016). PostgreSQL is the
embedded one, in a temporary directory.

    .venv/bin/python -m bench.token_verify [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import jwt

from plexica.app import create_app
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.client import password_login
from plexica.identity.jwks import build_verifier
from plexica.identity.revocation import core_revocations
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.provisioning import TenantRef
from plexica.settings import Settings
from plexica_sdk.auth import CachingVerifier
from plexica_sdk.revocation import CLIENT, SESSION, SUBJECT, Revocation

PUBLIC = "http://bench.local"


async def run(database_url: str, n: int) -> None:
    settings = Settings(database_url=database_url, public_url=PUBLIC)
    db = Database(settings.sqlalchemy_url, pool_size=2)
    await upgrade_platform(db)
    tenant = TenantRef(uuid.uuid4(), "bench", "Bench", "admin@bench.example")
    adapter = BuiltinIdentity(db, PUBLIC)
    await RealmStep(adapter, db).apply(tenant)
    password = "bench-password-123"
    await adapter.create_user(tenant.realm, "user@bench.example", password, frozenset({"member"}))
    app = create_app(settings, db=db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
            body = await password_login(
                http, f"{PUBLIC}/realms/{tenant.realm}", "user@bench.example", password
            )
            token = str(body["access_token"])
            revocations = core_revocations(db)
            await revocations.load()
            # Revocations of others in the map, as in a deployment that revoked some.
            now = int(time.time())
            for i in range(100):
                revocations.note(
                    Revocation(tenant.realm, CLIENT, f"svc-{i}", now),
                    Revocation(tenant.realm, SUBJECT, str(uuid.uuid4()), now),
                    Revocation(tenant.realm, SESSION, str(uuid.uuid4()), now),
                )
            verifier = build_verifier(db, PUBLIC, http, revocations=revocations)
            await verifier.verify(token)  # warm: realm registry, JWKS, permissions

            timings = []
            for _ in range(n):
                start = time.perf_counter_ns()
                await verifier.verify(token)
                timings.append(time.perf_counter_ns() - start)
            # A remembered token (the plugins' and the decision's cache): with and without the
            # revocation check on the hit, alternating batches so that load hits both alike.
            hits: dict[bool, list[int]] = {False: [], True: []}
            cached = {
                False: CachingVerifier(verifier),
                True: CachingVerifier(verifier, revocations=revocations),
            }
            for checked in (False, True):
                await cached[checked].verify(token)
            for _ in range(20):
                for checked in (False, True):
                    for _ in range(n // 20):
                        start = time.perf_counter_ns()
                        await cached[checked].verify(token)
                        hits[checked].append(time.perf_counter_ns() - start)
            key = next(iter(verifier.resolver._keys.values())).keys  # type: ignore[attr-defined]
            public = next(iter(key.values()))
            raw = []
            for _ in range(n):
                start = time.perf_counter_ns()
                jwt.decode(token, public, algorithms=["RS256"], audience="plexica-api")
                raw.append(time.perf_counter_ns() - start)
    await db.dispose()
    timings.sort()
    raw.sort()

    def ms(ns: float) -> str:
        return f"{ns / 1e6:.4f} ms"

    print(f"token bytes: {len(token)}; verifications: {n}")
    print(
        f"JwtVerifier.verify (warm): mean {ms(statistics.fmean(timings))}, "
        f"p50 {ms(timings[n // 2])}, p99 {ms(timings[int(n * 0.99)])}"
    )
    print(
        f"of which PyJWT RS256 decode alone: mean {ms(statistics.fmean(raw))}, p50 {ms(raw[n // 2])}"
    )
    for checked, values in hits.items():
        values.sort()
        label = "with" if checked else "without"
        print(
            f"CachingVerifier hit {label} the revocation check: "
            f"p50 {values[len(values) // 2] / 1e3:.2f} us, "
            f"p99 {values[int(len(values) * 0.99)] / 1e3:.2f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plexica-bench-") as tmp:
        Path(tmp).chmod(0o755)
        pg = EmbeddedPostgres(Path(tmp), database="postgres")
        pg.start()
        try:
            asyncio.run(run(pg.url, args.n))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
