"""The CRM as its own process (``plexica serve plugin crm``), logged in to the database as its
own login: it verifies tokens itself against the realm's JWKS (served here over real HTTP) and
answers only tenants where it is active."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.state import state_of
from plexica.settings import Settings
from tests.conftest import running
from tests.plugins.conftest import TenantFactory
from tests.support.tokens import StaticIssuers


@pytest.fixture(scope="module")
def crm_process(database_url: str, jwks_base: str, crm_manifest: object) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    # The operator's step: the plugin's own login (ADR 0076), the only database access its
    # process gets; it never sees the platform's credentials.
    out = subprocess.run(
        [sys.executable, "-m", "plexica.cli", "plugin", "credentials", "crm", "--json"],
        env={**env, "PLEXICA_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    login_url = json.loads(out.stdout)["database_url"]
    assert "plx_crm_login_" in login_url
    env.update(
        PLEXICA_PLUGIN_DATABASE_URL=login_url,
        PLEXICA_PORT=str(port),
        PLEXICA_LOG_FORMAT="json",
        PLEXICA_PLUGIN_ISSUER_BASE_URL=jwks_base,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexica.cli", "serve", "plugin", "crm"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "plugin not ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_crm_as_a_separate_process(
    crm_process: str,
    jwks_base: str,
    settings: Settings,
    db: Database,
    issuers: StaticIssuers,
    make_tenant: TenantFactory,
    crm_manifest: object,
) -> None:
    core = create_app(settings, db=db, verifier=issuers.verifier())
    state_of(core).plugin_endpoints = {"crm": crm_process}  # readiness over real HTTP
    a, b = await make_tenant(), await make_tenant()

    def headers(tenant_realm: str, tenant_id: object, *roles: str) -> dict[str, str]:
        token = issuers.token(
            tenant_realm,
            roles=list(roles),
            tenant_id=str(tenant_id),
            iss=f"{jwks_base}/{tenant_realm}",
        )
        return {"Authorization": f"Bearer {token}"}

    member_a = headers(a.ref.realm, a.id, "member")
    member_b = headers(b.ref.realm, b.id, "member")
    async for http in running(core):
        r = await http.post(
            f"/v1/tenants/{a.id}/plugins",
            json={"plugin_id": "crm"},
            headers=a.headers("tenant_admin"),
        )
        assert r.status_code == 201, r.text
        async with httpx.AsyncClient(base_url=crm_process) as crm:
            r = await crm.post("/v1/contacts", json={"first_name": "Grace"}, headers=member_a)
            assert r.status_code == 201, r.text
            assert (await crm.get("/v1/contacts", headers=member_a)).json()["total"] == 1
            # Tenant B, and tenant B pretending to be A through headers, get 404.
            assert (await crm.get("/v1/contacts", headers=member_b)).status_code == 404
            forged = {**member_b, "X-Tenant-ID": str(a.id), "X-User-ID": "alice"}
            assert (await crm.get("/v1/contacts", headers=forged)).status_code == 404
            # Headers alone are not a caller; a token from an untrusted issuer neither.
            r = await crm.get("/v1/contacts", headers={"X-Tenant-ID": str(a.id)})
            assert r.status_code == 401
            foreign = issuers.token(
                a.ref.realm,
                roles=["member"],
                tenant_id=str(a.id),
                iss="http://evil.test/realms/plexica-x",
            )
            r = await crm.get("/v1/contacts", headers={"Authorization": f"Bearer {foreign}"})
            assert r.status_code == 401

            admin = a.headers("tenant_admin")
            await http.post(f"/v1/tenants/{a.id}/plugins/crm/disable", headers=admin)
            assert (await crm.get("/v1/contacts", headers=member_a)).status_code == 404
            await http.post(f"/v1/tenants/{a.id}/plugins/crm/enable", headers=admin)
            assert (await crm.get("/v1/contacts", headers=member_a)).json()["total"] == 1


async def test_jwks_resolver_verifies_tenant_tokens(jwks_base: str, issuers: StaticIssuers) -> None:
    import uuid

    from plexica_sdk.auth import JwksIssuerResolver, JwtVerifier
    from plexica_sdk.errors import UnauthenticatedError, UnavailableError

    resolver = JwksIssuerResolver(jwks_base, min_refresh=0)
    verifier = JwtVerifier(resolver, "plexica-api")
    tenant_id = uuid.uuid4()
    try:
        token = issuers.token(
            "plexica-acme",
            roles=["member"],
            tenant_id=str(tenant_id),
            iss=f"{jwks_base}/plexica-acme",
        )
        principal = await verifier.verify(token)
        assert (principal.tenant_id, principal.tenant_slug, principal.roles) == (
            tenant_id,
            "acme",
            frozenset({"member"}),
        )
        operator = await verifier.verify(
            issuers.token(
                "plexica-platform", roles=["super_admin"], iss=f"{jwks_base}/plexica-platform"
            )
        )
        assert operator.is_operator
        bad = [
            issuers.token(
                "plexica-acme", roles=[], iss=f"{jwks_base}/plexica-acme"
            ),  # no tenant_id
            issuers.token(
                "plexica-acme", roles=[], tenant_id="nope", iss=f"{jwks_base}/plexica-acme"
            ),
            issuers.token(
                "plexica-platform",
                roles=[],
                tenant_id=str(tenant_id),
                iss=f"{jwks_base}/plexica-platform",
            ),
        ]
        for token in bad:
            with pytest.raises(UnauthenticatedError):
                await verifier.verify(token)
        # An unknown kid triggers one refetch, then fails.
        import jwt as pyjwt

        claims = pyjwt.decode(token, options={"verify_signature": False})
        other_kid = pyjwt.encode(
            claims, issuers.signing_key, algorithm="RS256", headers={"kid": "rotated"}
        )
        with pytest.raises(UnauthenticatedError):
            await verifier.verify(other_kid)
        # A realm whose JWKS cannot be fetched: unavailable (503), not a refusal (ADR 0178).
        unreachable = JwksIssuerResolver("http://127.0.0.1:9/realms")
        issuer = await unreachable.issuer("http://127.0.0.1:9/realms/plexica-acme")
        assert issuer is not None
        with pytest.raises(UnavailableError):
            await unreachable.key(issuer, "any")
        await unreachable.aclose()
    finally:
        await resolver.aclose()
