"""The Keycloak adapter against a real Keycloak 26: realms, users, roles, clients, keys."""

from __future__ import annotations

import secrets
from uuid import uuid4

import httpx
import jwt
import pytest

from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_admin import (
    IdentityConflictError,
    IdentityInvalidError,
    IdentityNotFoundError,
    IdentityUnavailableError,
)
from plexica.identity.keycloak_realm import API_AUDIENCE, CLI_CLIENT, CLI_REDIRECT
from plexica.kit.ports import free_port
from tests.keycloak.conftest import (
    REDIRECT_URI,
    Tenant,
    browser_login,
    client_credentials,
    pkce_pair,
    verifier_for,
)

PASSWORD = "correct-horse-battery-" + secrets.token_hex(4)


async def test_first_tenant_admin_logs_in_with_pkce_and_the_token_verifies(
    kc: KeycloakAdapter, tenant: Tenant
) -> None:
    await kc.create_realm(tenant.realm, tenant.id)  # a retry of the saga step changes nothing
    user = await kc.create_user(
        tenant.realm, "Admin@Acme.test", PASSWORD, frozenset({"tenant_admin"})
    )
    assert user.email == "admin@acme.test"

    tokens = await browser_login(kc.issuer_url(tenant.realm), "admin@acme.test", PASSWORD)
    assert tokens is not None
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert API_AUDIENCE in claims["aud"]
    assert claims["tenant_id"] == str(tenant.id)
    assert "tenant_admin" in claims["realm_access"]["roles"]
    assert claims["iss"] == kc.issuer_url(tenant.realm)

    verify = verifier_for(kc, tenant).verify
    principal = await verify(tokens["access_token"])
    assert principal.subject == user.id
    assert principal.tenant_id == tenant.id
    assert "tenant_admin" in principal.roles
    assert principal.client_id == "plexica-web"

    cli = await browser_login(
        kc.issuer_url(tenant.realm), "admin@acme.test", PASSWORD, CLI_CLIENT, CLI_REDIRECT
    )
    assert cli is not None
    assert (await verify(cli["access_token"])).client_id == "plexica-cli"

    # Ending the user's sessions (ADR 0115) stops their refresh tokens at Keycloak; the ID
    # token names the session, as the built-in provider's does.
    assert jwt.decode(cli["id_token"], options={"verify_signature": False})["sid"]
    await kc.end_sessions(tenant.realm, user.id)
    async with httpx.AsyncClient(timeout=30) as http:
        refreshed = await http.post(
            kc.issuer_url(tenant.realm) + "/protocol/openid-connect/token",
            data={"grant_type": "refresh_token", "refresh_token": cli["refresh_token"],
                  "client_id": CLI_CLIENT},
        )  # fmt: skip
    assert refreshed.status_code == 400, refreshed.text


async def test_web_client_requires_pkce(kc: KeycloakAdapter, tenant: Tenant) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(
            f"{kc.issuer_url(tenant.realm)}/protocol/openid-connect/auth",
            params={
                "client_id": "plexica-web",
                "response_type": "code",
                "scope": "openid",
                "redirect_uri": REDIRECT_URI,
            },
        )
    assert response.status_code == 302
    assert "error=invalid_request" in response.headers["location"]


async def test_realm_of_another_tenant_is_a_conflict(kc: KeycloakAdapter, tenant: Tenant) -> None:
    with pytest.raises(IdentityConflictError):
        await kc.create_realm(tenant.realm, uuid4())


async def test_disabled_user_cannot_log_in(kc: KeycloakAdapter, tenant: Tenant) -> None:
    user = await kc.create_user(tenant.realm, "leaver@acme.test", PASSWORD, frozenset({"member"}))
    await kc.set_user_enabled(tenant.realm, user.id, False)

    assert await browser_login(kc.issuer_url(tenant.realm), "leaver@acme.test", PASSWORD) is None
    listed = {u.email: u for u in await kc.list_users(tenant.realm)}
    assert listed["leaver@acme.test"].enabled is False


async def test_repeated_wrong_passwords_lock_the_account(
    kc: KeycloakAdapter, tenant: Tenant
) -> None:
    await kc.create_user(tenant.realm, "target@acme.test", PASSWORD, frozenset({"member"}))
    issuer = kc.issuer_url(tenant.realm)
    assert await browser_login(issuer, "target@acme.test", PASSWORD) is not None
    for _ in range(10):
        assert await browser_login(issuer, "target@acme.test", "guess") is None
    assert await browser_login(issuer, "target@acme.test", PASSWORD) is None


async def test_roles_are_set_and_bad_input_changes_nothing(
    kc: KeycloakAdapter, tenant: Tenant
) -> None:
    user = await kc.create_user(tenant.realm, "dev@acme.test", None, frozenset({"member"}))
    await kc.set_user_roles(tenant.realm, user.id, frozenset({"tenant_admin", "member"}))
    await kc.set_user_roles(tenant.realm, user.id, frozenset({"tenant_admin"}))

    with pytest.raises(IdentityInvalidError) as unknown:
        await kc.set_user_roles(tenant.realm, user.id, frozenset({"member", "root"}))
    assert unknown.value.code == "identity_unknown_role"
    assert unknown.value.status == 422
    with pytest.raises(IdentityInvalidError):
        await kc.create_user(tenant.realm, "new@acme.test", None, frozenset({"root"}))
    with pytest.raises(IdentityConflictError) as duplicate:
        await kc.create_user(tenant.realm, "DEV@acme.test", None, frozenset())
    assert duplicate.value.code == "identity_user_exists"
    with pytest.raises(IdentityNotFoundError):
        await kc.set_user_roles(tenant.realm, str(uuid4()), frozenset({"member"}))
    with pytest.raises(IdentityInvalidError):
        await kc.set_user_enabled(tenant.realm, "../../../master", False)

    listed = {u.email: u for u in await kc.list_users(tenant.realm)}
    assert listed["dev@acme.test"].roles == {"tenant_admin"}
    assert "new@acme.test" not in listed


async def test_service_client_token_and_key_rotation(kc: KeycloakAdapter, tenant: Tenant) -> None:
    issuer = kc.issuer_url(tenant.realm)
    client = await kc.create_client(tenant.realm, "plugin-crm", public=False)
    assert client.secret
    assert await kc.create_client(tenant.realm, "plugin-crm", public=False) == client
    verifier = verifier_for(kc, tenant)

    before = await client_credentials(issuer, client.client_id, client.secret)
    principal = await verifier.verify(before)
    assert principal.tenant_id == tenant.id
    assert principal.client_id == "plugin-crm"

    await kc.rotate_keys(tenant.realm)
    after = await client_credentials(issuer, client.client_id, client.secret)
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    assert (await verifier.verify(after)).tenant_id == tenant.id
    assert (await verifier.verify(before)).tenant_id == tenant.id  # issued before: still valid


async def test_disabled_realm_refuses_logins_and_delete_is_idempotent(
    kc: KeycloakAdapter,
) -> None:
    realm = f"plexica-kc-{secrets.token_hex(4)}"
    await kc.create_realm(realm, uuid4())
    await kc.set_realm_enabled(realm, False)
    _, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=30) as http:
        auth = await http.get(
            f"{kc.issuer_url(realm)}/protocol/openid-connect/auth",
            params={"client_id": "plexica-web", "response_type": "code", "scope": "openid",
                    "redirect_uri": REDIRECT_URI, "code_challenge": challenge,
                    "code_challenge_method": "S256"},
        )  # fmt: skip
        assert auth.status_code >= 400
        await kc.delete_realm(realm)
        await kc.delete_realm(realm)
        gone = await http.get(f"{kc.issuer_url(realm)}/.well-known/openid-configuration")
        assert gone.status_code == 404
    with pytest.raises(IdentityNotFoundError):
        await kc.set_realm_enabled(realm, True)


async def test_unreachable_keycloak_is_unavailable() -> None:
    async with KeycloakAdapter(f"http://127.0.0.1:{free_port()}", "admin", "x") as down:
        with pytest.raises(IdentityUnavailableError) as exc:
            await down.create_realm("plexica-acme", uuid4())
    assert (exc.value.status, exc.value.code) == (503, "identity_unavailable")


async def test_wrong_admin_password_is_unavailable(keycloak: dict[str, str]) -> None:
    async with KeycloakAdapter(keycloak["url"], keycloak["admin_user"], "wrong") as kc:
        with pytest.raises(IdentityUnavailableError):
            await kc.delete_realm("plexica-acme")


async def test_service_client_lifecycle_and_password_reset(
    kc: KeycloakAdapter, tenant: Tenant
) -> None:
    issuer = kc.issuer_url(tenant.realm)
    client = await kc.create_client(
        tenant.realm, "svc-life", public=False, roles=frozenset({"member"})
    )
    assert client.secret
    claims = jwt.decode(
        await client_credentials(issuer, "svc-life", client.secret),
        options={"verify_signature": False},
    )
    assert claims["service"] is True
    assert "member" in claims["realm_access"]["roles"]

    await kc.set_client_enabled(tenant.realm, "svc-life", False)
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(
            issuer + "/protocol/openid-connect/token",
            data={"grant_type": "client_credentials"},
            auth=("svc-life", client.secret),
        )
    assert refused.status_code in (400, 401)
    await kc.set_client_enabled(tenant.realm, "svc-life", True)
    secret = await kc.rotate_client_secret(tenant.realm, "svc-life")
    assert secret != client.secret
    assert await client_credentials(issuer, "svc-life", secret)
    await kc.delete_client(tenant.realm, "svc-life")
    await kc.delete_client(tenant.realm, "svc-life")
    with pytest.raises(IdentityNotFoundError):
        await kc.rotate_client_secret(tenant.realm, "svc-life")

    password = "another-horse-" + secrets.token_hex(4)
    user = await kc.create_user(tenant.realm, "reset@acme.test", None, frozenset({"member"}))
    assert (await kc.set_password(tenant.realm, "Reset@Acme.test", password)).id == user.id
    assert await browser_login(issuer, "reset@acme.test", password) is not None
    with pytest.raises(IdentityNotFoundError):
        await kc.set_password(tenant.realm, "nobody@acme.test", password)


async def test_invited_user_is_disabled_until_accepted_and_can_be_deleted(
    kc: KeycloakAdapter, tenant: Tenant
) -> None:
    """What an invitation needs of the adapter (ADR 0225)."""
    email = "invited@acme.test"
    user = await kc.create_user(tenant.realm, email, None, frozenset({"member"}), enabled=False)
    assert user.enabled is False
    listed = {u.email: u for u in await kc.list_users(tenant.realm)}
    assert listed[email].enabled is False
    assert listed[email].roles == frozenset({"member"})
    issuer = kc.issuer_url(tenant.realm)
    assert await browser_login(issuer, email, PASSWORD) is None

    await kc.set_password(tenant.realm, email, PASSWORD)
    await kc.set_user_enabled(tenant.realm, user.id, True)
    assert await browser_login(issuer, email, PASSWORD) is not None

    await kc.delete_user(tenant.realm, user.id)
    await kc.delete_user(tenant.realm, user.id)  # idempotent
    assert email not in {u.email for u in await kc.list_users(tenant.realm)}
