"""A tenant's first admin is invited by e-mail (ADR 0242): the last provisioning step sends the
invitation, and the operator can send it again until it is accepted.

The admin is made by the realm step, enabled and without a password, so that
``plexica user reset-password`` stays a break-glass path; accepting the invitation sets the
password. Which invitation is the first admin's is read from ``platform.invites`` (the tenant
and the admin's address), so the step needs no record of its own to be idempotent.
"""

from __future__ import annotations

from plexica.identity import invite_repository as repo
from plexica.identity.adapter import RealmUser
from plexica.identity.invite_repository import InviteRow
from plexica.identity.invites import Actor, Invites, status_of, to_invite
from plexica.identity.schemas import AdminInvite, Invite
from plexica.kit.provisioning import TenantRef
from plexica_sdk.context import TENANT_ADMIN

PROVISIONING_ACTOR = "provisioning"
ADMIN_ROLES = frozenset({TENANT_ADMIN})


def admin_email(tenant: TenantRef) -> str:
    return tenant.admin_email.strip().lower()


class FirstAdmin:
    def __init__(self, invites: Invites) -> None:
        self.invites = invites

    async def _latest(self, tenant: TenantRef) -> InviteRow | None:
        async with self.invites.db.session() as session:
            return await repo.latest_for(session, tenant.id, admin_email(tenant))

    async def status(self, tenant: TenantRef) -> AdminInvite:
        row = await self._latest(tenant)
        if row is None:
            return AdminInvite(email=admin_email(tenant), status="none")
        invite = to_invite(row, self.invites.clock())
        return AdminInvite(email=row.email, status=invite.status, invite=invite)

    async def invite_once(self, tenant: TenantRef) -> Invite | None:
        """Sends the invitation unless one was sent already (accepted or not): a saga resumed
        after a crash finds the row its first run committed and sends nothing."""
        row = await self._latest(tenant)
        if row is not None and row.revoked_at is None:
            return None
        return await self._new(tenant, PROVISIONING_ACTOR)

    async def send_again(self, tenant: TenantRef, actor: str) -> Invite:
        """A new link; the previous one stops working. An accepted invitation is not sent again
        (409 ``invite_not_pending``)."""
        row = await self._latest(tenant)
        if row is None or status_of(row, self.invites.clock()) == "revoked":
            return await self._new(tenant, actor)
        return await self.invites.resend(Actor(actor, tenant.realm, tenant.id), row.id)

    async def forget(self, tenant: TenantRef) -> None:
        """The tenant's open invitations stop working (its realm and users are going)."""
        async with self.invites.db.session() as session:
            await repo.revoke_open(session, tenant.id, self.invites.clock())

    async def _new(self, tenant: TenantRef, actor: str) -> Invite:
        user = await self._user(tenant)
        return await self.invites.issue(Actor(actor, tenant.realm, tenant.id), user, ADMIN_ROLES)

    async def _user(self, tenant: TenantRef) -> RealmUser:
        adapter, email = self.invites.adapter, admin_email(tenant)
        for user in await adapter.list_users(tenant.realm):
            if user.email == email:
                return user
        # Withdrawn from the users page (which deletes the user): made again as the realm
        # step makes it.
        return await adapter.create_user(tenant.realm, email, None, ADMIN_ROLES)


class AdminInviteStep:
    """Provisioning, last: the first admin's invitation. Undone and purged by revoking what is
    still open, so a retried saga sends a new, working link."""

    name = "admin_invite"

    def __init__(self, first_admin: FirstAdmin) -> None:
        self.first_admin = first_admin

    async def apply(self, tenant: TenantRef) -> None:
        await self.first_admin.invite_once(tenant)

    async def undo(self, tenant: TenantRef) -> None:
        await self.first_admin.forget(tenant)

    async def purge(self, tenant: TenantRef) -> None:
        await self.first_admin.forget(tenant)
