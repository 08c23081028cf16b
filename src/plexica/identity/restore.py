"""A tenant's realm as a backup keeps it (users, their roles and, with the built-in provider,
their password hashes; the tenant's role permissions), and the realm step of a restore.

Keycloak gives no password hashes through its admin API: its users come back without a password
and set one with the provider's recovery flow or ``plexica user reset-password`` (ADR 0173).
"""

from __future__ import annotations

import contextlib
import uuid
from uuid import UUID

from pydantic import BaseModel, Field

from plexica.identity import repository
from plexica.identity.adapter import IdentityAdapter
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica_sdk.errors import ConflictError


class SavedUser(BaseModel):
    email: str
    enabled: bool = True
    roles: list[str] = Field(default_factory=list)
    password_hash: str | None = None


class SavedRealm(BaseModel):
    users: list[SavedUser] = Field(default_factory=list)
    permissions: list[tuple[str, str]] = Field(default_factory=list)


async def saved_realm(
    adapter: IdentityAdapter, db: Database, realm: str, tenant_id: UUID
) -> SavedRealm:
    users = await adapter.list_users(realm)
    async with db.session() as session:
        hashes = {
            r["email"]: r["password_hash"] for r in await repository.list_users(session, realm)
        }
        permissions = await repository.list_permissions(session, tenant_id)
    return SavedRealm(
        users=[
            SavedUser(
                email=u.email,
                enabled=u.enabled,
                roles=sorted(u.roles),
                password_hash=hashes.get(u.email),
            )
            for u in users
        ],
        permissions=permissions,
    )


class RestoredRealmStep(RealmStep):
    """The realm of a restored tenant: made as for a new tenant, with the backup's users (new
    ids: the source tenant may still hold the old ones) and permissions instead of a first
    admin. Undone and purged as any tenant's realm."""

    def __init__(self, adapter: IdentityAdapter, db: Database, saved: SavedRealm) -> None:
        super().__init__(adapter, db)
        self.saved = saved

    async def apply(self, tenant: TenantRef) -> None:
        await self.adapter.create_realm(tenant.realm, tenant.id)
        async with self.db.session() as session:
            await repository.upsert_realm(session, tenant.realm, tenant.id)
        builtin = isinstance(self.adapter, BuiltinIdentity)
        for user in self.saved.users:
            if builtin:
                async with self.db.session() as session:
                    user_id = uuid.uuid4()
                    made = await repository.insert_user(
                        session, user_id, realm=tenant.realm, email=user.email,
                        password_hash=user.password_hash, roles=user.roles,
                    )  # fmt: skip
                    if made and not user.enabled:
                        await repository.update_user(session, user_id, enabled=False)
                continue
            with contextlib.suppress(ConflictError):  # made by an earlier attempt
                found = await self.adapter.create_user(
                    tenant.realm, user.email, None, frozenset(user.roles)
                )
                if not user.enabled:
                    await self.adapter.set_user_enabled(tenant.realm, found.id, False)
        async with self.db.session() as session:
            for role, permission in self.saved.permissions:
                await repository.grant(session, tenant.id, role, [permission])
