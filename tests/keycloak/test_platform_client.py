"""The platform's client in Keycloak's master realm (ADR 0251), against Keycloak 26: made by
``plexica keycloak platform-client`` as the admin, it creates and runs realms, takes over the
platform's realms made before it, and can do nothing else: not in the master realm, not in a
realm that is not the platform's, not give itself more."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from plexica.cli.main import app as cli
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_admin import IdentityProviderError, IdentityUnavailableError


def _platform_client(keycloak: dict[str, Any], client_id: str, secret: str) -> str:
    env = {
        "PLEXICA_KEYCLOAK_URL": keycloak["url"],
        "PLEXICA_KEYCLOAK_ADMIN_USER": keycloak["admin_user"],
        "PLEXICA_KEYCLOAK_ADMIN_PASSWORD": keycloak["admin_password"],
        "PLEXICA_KEYCLOAK_CLIENT_ID": client_id,
        "PLEXICA_KEYCLOAK_CLIENT_SECRET": secret,
    }
    done = CliRunner().invoke(cli, ["keycloak", "platform-client", "--wait", "30"], env=env)
    assert done.exit_code == 0, done.output
    return done.output


async def test_the_platform_client_runs_the_platforms_realms_and_nothing_else(
    keycloak: dict[str, Any], kc: KeycloakAdapter
) -> None:
    suffix = uuid4().hex[:8]
    before, foreign = f"plexica-old{suffix}", f"company-{suffix}"
    await kc.create_realm(before, uuid4())  # made by the admin, as before this client existed
    # Not the platform's, whatever the name: another realm, and one named like the platform's
    # that it did not make (no tenant id).
    stray = f"plexica-stray{suffix}"
    for other in (foreign, stray):
        made = await kc._call("POST", "/admin/realms", json={"realm": other, "enabled": True})
        assert made.status_code == 201, made.text
    client_id, secret = f"plexica-core-{suffix}", secrets.token_urlsafe(32)
    output = await asyncio.to_thread(_platform_client, keycloak, client_id, secret)
    assert f"client {client_id} ready" in output

    async with KeycloakAdapter(keycloak["url"], client_id, secret, service_account=True) as sa:
        # A realm it makes is its own to run, with the token it had before (lightweight tokens:
        # rights from Keycloak's database); one of the platform's from before is granted.
        mine = f"plexica-new{suffix}"
        await sa.create_realm(mine, uuid4())
        user = await sa.create_user(
            mine, f"a@{suffix}.example", "pw-" + secret, frozenset({"member"})
        )
        assert [u.id for u in await sa.list_users(mine)] == [user.id]
        await sa.create_user(before, f"b@{suffix}.example", "pw-" + secret, frozenset())
        # Not a realm of the platform's, not the master realm, not more roles for itself.
        for other in (foreign, stray):
            with pytest.raises(IdentityProviderError, match="may not administer"):
                await sa.list_users(other)
        assert (await sa._call("GET", "/admin/realms/master/users")).status_code == 403
        admin_role = (await kc._call("GET", "/admin/realms/master/roles/admin")).json()
        assert (await sa._call("GET", "/admin/realms/master/clients")).status_code == 403
        own = await kc._call("GET", "/admin/realms/master/clients", params={"clientId": client_id})
        user_of = await kc._call(
            "GET", f"/admin/realms/master/clients/{own.json()[0]['id']}/service-account-user"
        )
        path = f"/admin/realms/master/users/{user_of.json()['id']}/role-mappings/realm"
        assert (await sa._call("POST", path, json=[admin_role])).status_code == 403
        assert (await sa._call("DELETE", f"/admin/realms/{foreign}")).status_code in (403, 404)
        await sa.delete_realm(mine)
        await sa.delete_realm(before)

    # A new secret (rotation, run again): the old one no longer logs in.
    await asyncio.to_thread(_platform_client, keycloak, client_id, secrets.token_urlsafe(32))
    async with KeycloakAdapter(keycloak["url"], client_id, secret, service_account=True) as old:
        with pytest.raises(IdentityUnavailableError):
            await old.list_users(foreign)
    for other in (foreign, stray):
        await kc._call("DELETE", f"/admin/realms/{other}")
