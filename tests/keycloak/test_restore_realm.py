"""A restored tenant's realm on Keycloak: the backup's users come back with their roles and
enabled flag, without a password (Keycloak's admin API gives no hashes, ADR 0173), and the
tenant's role permissions with them; applying the step again changes nothing."""

from __future__ import annotations

import secrets
from uuid import uuid4

from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.restore import RestoredRealmStep, saved_realm
from plexica.identity.service import grant_permissions, role_permissions
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from tests.keycloak.conftest import Tenant

PASSWORD = "Restore-drill-1!"


async def test_a_restored_realm_has_the_backups_users_roles_and_permissions(
    kc: KeycloakAdapter, tenant: Tenant, db: Database
) -> None:
    await kc.create_user(tenant.realm, "boss@restore.test", PASSWORD, frozenset({"tenant_admin"}))
    left = await kc.create_user(tenant.realm, "left@restore.test", None, frozenset({"member"}))
    await kc.set_user_enabled(tenant.realm, left.id, False)
    async with db.session() as s:
        await grant_permissions(s, tenant.id, "member", ["restore:drill:read"])
    saved = await saved_realm(kc, db, tenant.realm, tenant.id)
    assert all(u.password_hash is None for u in saved.users)

    copy = TenantRef(uuid4(), f"kc-copy-{secrets.token_hex(4)}", "Copy", "boss@restore.test")
    step = RestoredRealmStep(kc, db, saved)
    try:
        await step.apply(copy)
        await step.apply(copy)  # a retried step: nothing new, nothing refused
        users = {u.email: u for u in await kc.list_users(copy.realm)}
        assert set(users) >= {"boss@restore.test", "left@restore.test"}
        assert "tenant_admin" in users["boss@restore.test"].roles
        assert "member" in users["left@restore.test"].roles
        assert users["boss@restore.test"].enabled
        assert not users["left@restore.test"].enabled
        async with db.session() as s:
            assert "restore:drill:read" in await role_permissions(s, copy.id, "member")
    finally:
        await step.purge(copy)
