"""``IdentityAdapter`` for the built-in provider, and the realm step of tenant provisioning."""

from __future__ import annotations

import contextlib
from uuid import UUID

import structlog

from plexica.identity import repository, revocation, service, support_repository
from plexica.identity.adapter import IdentityAdapter, RealmClient, RealmUser
from plexica.identity.schemas import User
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica_sdk.context import TENANT_ADMIN
from plexica_sdk.errors import ConflictError, NotFoundError
from plexica_sdk.revocation import Revocation

log = structlog.get_logger("plexica.identity")


def _realm_user(user: User) -> RealmUser:
    return RealmUser(str(user.id), user.email, user.enabled, frozenset(user.roles))


def _user_id(user_id: str) -> UUID:
    try:
        return UUID(user_id)
    except ValueError:
        raise NotFoundError("no such user") from None


class BuiltinIdentity:
    """Each method is its own transaction: the adapter is the boundary, like a remote provider."""

    def __init__(self, db: Database, base_url: str) -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")

    def issuer_url(self, realm: str) -> str:
        return service.issuer_url(self.base_url, realm)

    async def create_realm(self, realm: str, tenant_id: UUID | None) -> None:
        async with self.db.session() as session:
            await service.ensure_realm(session, realm, tenant_id, self.base_url)

    async def delete_realm(self, realm: str) -> None:
        async with self.db.session() as session:
            await repository.delete_realm(session, realm)

    async def set_realm_enabled(self, realm: str, enabled: bool) -> None:
        async with self.db.session() as session:
            if await repository.get_realm(session, realm) is None:
                raise NotFoundError("no such realm")
            await repository.set_realm_enabled(session, realm, enabled)

    async def create_user(
        self,
        realm: str,
        email: str,
        password: str | None,
        roles: frozenset[str],
        *,
        enabled: bool = True,
    ) -> RealmUser:
        async with self.db.session() as session:
            await service.realm_or_404(session, realm)
            user = await service.create_user(
                session, realm, email, password, roles, enabled=enabled
            )
        return _realm_user(user)

    async def delete_user(self, realm: str, user_id: str) -> None:
        async with self.db.session() as session:
            await repository.delete_user(session, realm, _user_id(user_id))

    async def list_users(self, realm: str) -> list[RealmUser]:
        async with self.db.session() as session:
            rows = await repository.list_users(session, realm)
        return [_realm_user(service.to_user(r)) for r in rows]

    async def set_password(self, realm: str, email: str, password: str) -> RealmUser:
        async with self.db.session() as session:
            await service.realm_or_404(session, realm)
            user = await service.set_password(session, realm, email, password)
        return _realm_user(user)

    async def change_password(
        self, realm: str, user_id: str, current: str, new: str, *, keep_session: str | None
    ) -> list[Revocation]:
        try:
            keep = UUID(keep_session) if keep_session else None
        except ValueError:
            keep = None  # not a session of this provider: none is kept
        async with self.db.session() as session:
            await service.realm_or_404(session, realm)
            ended = await service.change_password(
                session, realm, _user_id(user_id), current, new, keep=keep
            )
            # With the refresh tokens, in the same transaction: their access tokens are refused.
            return [await revocation.end_session(session, realm, str(f)) for f in sorted(ended)]

    async def set_user_enabled(self, realm: str, user_id: str, enabled: bool) -> None:
        async with self.db.session() as session:
            await service.set_user_enabled(session, realm, _user_id(user_id), enabled)

    async def set_user_roles(self, realm: str, user_id: str, roles: frozenset[str]) -> None:
        async with self.db.session() as session:
            await service.set_user_roles(session, realm, _user_id(user_id), roles)

    async def end_sessions(self, realm: str, user_id: str) -> None:
        async with self.db.session() as session:
            await service.user_or_404(session, realm, _user_id(user_id))
            await repository.revoke_user_refresh(session, _user_id(user_id))

    async def create_client(
        self,
        realm: str,
        client_id: str,
        *,
        public: bool,
        redirect_uris: tuple[str, ...] = (),
        roles: frozenset[str] = frozenset(),
    ) -> RealmClient:
        async with self.db.session() as session:
            await service.realm_or_404(session, realm)
            made = await service.create_client(
                session, realm, client_id, public=public, redirect_uris=redirect_uris, roles=roles
            )
        return RealmClient(made.client_id, made.public, made.redirect_uris, made.secret)

    async def set_client_enabled(self, realm: str, client_id: str, enabled: bool) -> None:
        async with self.db.session() as session:
            if not await repository.set_client_enabled(session, realm, client_id, enabled):
                raise NotFoundError("no such client")

    async def rotate_client_secret(self, realm: str, client_id: str) -> str:
        secret = service.generate_client_secret()
        async with self.db.session() as session:
            if not await repository.set_client_secret(
                session, realm, client_id, service.sha256(secret)
            ):
                raise NotFoundError("no such client")
        return secret

    async def delete_client(self, realm: str, client_id: str) -> None:
        async with self.db.session() as session:
            await repository.delete_client(session, realm, client_id)

    async def rotate_keys(self, realm: str) -> None:
        async with self.db.session() as session:
            await service.realm_or_404(session, realm)
            await service.rotate_keys(session, realm)


class RealmStep:
    """Provisioning: the tenant's realm ``plexica-<slug>`` and its first ``tenant_admin``.

    The admin has no password yet: the invitation the last step mails them sets it (ADR 0242),
    and ``plexica user reset-password`` is the break-glass path. The realm is also written to
    the realm registry, which is what token verification accepts as issuers.
    """

    name = "identity_realm"

    def __init__(self, adapter: IdentityAdapter, db: Database) -> None:
        self.adapter = adapter
        self.db = db

    async def apply(self, tenant: TenantRef) -> None:
        await self.adapter.create_realm(tenant.realm, tenant.id)
        async with self.db.session() as session:
            await repository.upsert_realm(session, tenant.realm, tenant.id)
        with contextlib.suppress(ConflictError):
            await self.adapter.create_user(
                tenant.realm, tenant.admin_email.strip().lower(), None, frozenset({TENANT_ADMIN})
            )

    async def undo(self, tenant: TenantRef) -> None:
        await self.purge(tenant)

    async def suspend(self, tenant: TenantRef) -> None:
        """No sign-in and no new token (users' or service clients') while suspended; tokens
        already issued are refused everywhere, plugins included (403 ``tenant_suspended``,
        through the revocation store: ADR 0115)."""
        await self._set_enabled(tenant, False)
        async with self.db.session() as session:
            await revocation.suspend_realm(session, tenant.realm)

    async def resume(self, tenant: TenantRef) -> None:
        await self._set_enabled(tenant, True)
        async with self.db.session() as session:
            await revocation.resume_realm(session, tenant.realm)

    async def _set_enabled(self, tenant: TenantRef, enabled: bool) -> None:
        try:
            await self.adapter.set_realm_enabled(tenant.realm, enabled)
        except NotFoundError:
            # No realm, no sign-in: nothing to switch, and the tenant must not get stuck.
            log.warning("tenant_realm_missing", tenant_id=str(tenant.id), realm=tenant.realm)

    async def purge(self, tenant: TenantRef) -> None:
        await self.adapter.delete_realm(tenant.realm)
        async with self.db.session() as session:
            await repository.delete_realm(session, tenant.realm)
            await repository.delete_tenant_permissions(session, tenant.id)
            await support_repository.forget_realm(session, tenant.realm)
            await revocation.forget_realm(session, tenant.realm)
