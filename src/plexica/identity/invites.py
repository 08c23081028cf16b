"""Invitations by e-mail (ADR 0225): a disabled user without a password, and a link with a
single-use, expiring token that lets the invitee set their password.

The token is random (256 bits) and stored only as its SHA-256; the lookup is by hash and the
hash is compared again in constant time. The identity provider is its own transaction (it may
be Keycloak): the invite row, audit record and event commit after the mail has been handed
over, and when it cannot be, the user made at the provider is deleted again, so nothing
half-made remains.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.events import service as events
from plexica.events.events import CoreEvent
from plexica.identity import invite_repository as repo
from plexica.identity import policy
from plexica.identity.adapter import IdentityAdapter, RealmUser
from plexica.identity.invite_repository import InviteRow, NewInvite
from plexica.identity.names import OPERATOR_REALM
from plexica.identity.schemas import Invite, InviteAccepted, InviteInfo
from plexica.identity.service import check_roles, now_utc, sha256
from plexica.kit.db import Database
from plexica.kit.mail import Mail, Mailer
from plexica.kit.provisioning import REALM_PREFIX
from plexica.settings import Settings
from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError

log = structlog.get_logger("plexica.identity.invites")
Clock = Callable[[], datetime]


class InviteInvalidError(PlexicaError):
    """The link's token is unknown, or its invite can no longer be accepted."""

    status, code = 404, "invite_not_found"


_GONE = {
    "expired": ("invite_expired", "This invitation has expired: ask for a new one."),
    "accepted": ("invite_used", "This invitation has already been used: sign in instead."),
    "revoked": ("invite_revoked", "This invitation was withdrawn."),
}


def status_of(row: InviteRow, now: datetime) -> str:
    if row.accepted_at is not None:
        return "accepted"
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if row.expires_at <= now else "pending"


def to_invite(row: InviteRow, now: datetime) -> Invite:
    return Invite(
        id=row.id, email=row.email, roles=sorted(row.roles), user_id=row.user_id,
        status=status_of(row, now), created_at=row.created_at, sent_at=row.sent_at,
        expires_at=row.expires_at, sent_count=row.sent_count,
    )  # fmt: skip


def tenant_slug(realm: str) -> str | None:
    return None if realm == OPERATOR_REALM else realm.removeprefix(REALM_PREFIX)


def new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, sha256(token)


@dataclass(frozen=True)
class Actor:
    name: str
    realm: str
    tenant_id: UUID | None


class Invites:
    def __init__(
        self,
        db: Database,
        adapter: IdentityAdapter,
        mailer: Mailer,
        settings: Settings,
        clock: Clock = now_utc,
    ) -> None:
        self.db = db
        self.adapter = adapter
        self.mailer = mailer
        self.settings = settings
        self.clock = clock
        self.ttl = timedelta(hours=settings.invite_ttl_hours)

    def link(self, realm: str, token: str) -> str:
        slug = tenant_slug(realm)
        base = (self.settings.tenant_web_url(slug) if slug else None) or (
            self.settings.public_base_url
        )
        return f"{base}/invite/{token}"

    def _mail(self, row: InviteRow, token: str) -> Mail:
        slug = tenant_slug(row.realm)
        where = f"the organisation {slug}" if slug else "the Plexica operator console"
        text = (
            f"You have been invited to {where} on Plexica.\n\n"
            f"Choose your password here (the link works once, until "
            f"{row.expires_at:%Y-%m-%d %H:%M} UTC):\n\n{self.link(row.realm, token)}\n\n"
            "If you did not expect this invitation, ignore this mail.\n"
        )
        return Mail(to=row.email, subject="Your invitation to Plexica", text=text)

    async def _record(
        self,
        session: AsyncSession,
        actor: Actor | str,
        *,
        action: str,
        row: InviteRow,
        event: CoreEvent,
        extra: dict[str, Any] | None = None,
    ) -> None:
        name = actor.name if isinstance(actor, Actor) else actor
        after = to_invite(row, self.clock()).model_dump(mode="json")
        await audit.record(session, name, action, row.tenant_id, f"invite:{row.id}", after=after)
        data: dict[str, Any] = {"user_id": row.user_id, "invite_id": str(row.id), **(extra or {})}
        await events.publish(
            session, event, data, tenant_id=row.tenant_id, subject=f"users/{row.user_id}"
        )

    async def create(self, actor: Actor, email: str, roles: list[str]) -> Invite:
        wanted = check_roles(actor.realm, roles)
        made = await self.adapter.create_user(actor.realm, email, None, wanted, enabled=False)
        try:
            return await self.issue(actor, made, wanted)
        except BaseException:
            await self.adapter.delete_user(actor.realm, made.id)
            raise

    async def issue(self, actor: Actor, user: RealmUser, roles: frozenset[str]) -> Invite:
        """An invite for ``user``, already at the provider in the actor's realm; the row commits
        only once the mail has been handed over."""
        token, token_hash = new_token()
        now = self.clock()
        async with self.db.session() as session:
            row = await repo.insert(
                session,
                NewInvite(
                    id=uuid.uuid4(), tenant_id=actor.tenant_id, realm=actor.realm,
                    user_id=user.id, email=user.email, roles=sorted(roles),
                    token_hash=token_hash, invited_by=actor.name, now=now,
                    expires_at=now + self.ttl,
                ),
            )  # fmt: skip
            await self._record(
                session, actor, action="identity.invite.created", row=row,
                event=CoreEvent.USER_INVITED, extra={"roles": sorted(roles)},
            )  # fmt: skip
            await self._send(row, token)  # inside the transaction: it commits only if sent
        return to_invite(row, now)

    async def _send(self, row: InviteRow, token: str) -> None:
        await self.mailer.send(self._mail(row, token))
        if self.settings.smtp_url is None:
            log.info("invite_link", email=row.email, link=self.link(row.realm, token))

    async def pending(self, realm: str) -> list[Invite]:
        now = self.clock()
        async with self.db.session() as session:
            return [to_invite(r, now) for r in await repo.pending(session, realm, now)]

    async def _pending_row(self, session: AsyncSession, realm: str, invite_id: UUID) -> InviteRow:
        row = await repo.lock(session, realm, invite_id)
        if row is None:
            raise NotFoundError("no such invitation")
        state = status_of(row, self.clock())
        if state in ("accepted", "revoked"):
            raise ConflictError(
                f"this invitation is {state}", code="invite_not_pending", details={"status": state}
            )
        return row

    async def resend(self, actor: Actor, invite_id: UUID) -> Invite:
        """A new token and expiry: the old link stops working (when the mail cannot be sent,
        nothing changes and the old link still works)."""
        token, token_hash = new_token()
        now = self.clock()
        async with self.db.session() as session:
            await self._pending_row(session, actor.realm, invite_id)
            row = await repo.renew(session, invite_id, token_hash, now, now + self.ttl)
            await self._record(
                session, actor, action="identity.invite.resent", row=row,
                event=CoreEvent.USER_INVITE_RESENT,
            )  # fmt: skip
            await self._send(row, token)
        return to_invite(row, now)

    async def revoke(self, actor: Actor, invite_id: UUID) -> Invite:
        """The link stops working and the invited user, who never signed in, is deleted. A user
        who is enabled was not made by the invitation (a tenant's first admin, ADR 0242) and
        may have a password already: only the link goes."""
        now = self.clock()
        async with self.db.session() as session:
            row = await self._pending_row(session, actor.realm, invite_id)
            users = await self.adapter.list_users(row.realm)
            if not any(u.id == row.user_id and u.enabled for u in users):
                await self.adapter.delete_user(row.realm, row.user_id)
            row = await repo.mark(session, invite_id, revoked_at=now)
            await self._record(
                session, actor, action="identity.invite.revoked", row=row,
                event=CoreEvent.USER_INVITE_REVOKED,
            )  # fmt: skip
        return to_invite(row, now)

    async def _usable(self, session: AsyncSession, token: str, *, lock: bool) -> InviteRow:
        token_hash = sha256(token)
        found = await repo.by_token(session, token_hash, for_update=lock)
        if found is None or not hmac.compare_digest(found[1], token_hash):
            raise InviteInvalidError("This invitation link is not valid.")
        row = found[0]
        state = status_of(row, self.clock())
        if state != "pending":
            code, message = _GONE[state]
            raise InviteInvalidError(message, code=code, status=410)
        return row

    async def inspect(self, token: str) -> InviteInfo:
        async with self.db.session() as session:
            row = await self._usable(session, token, lock=False)
            found = await policy.of(session, row.realm)
        return InviteInfo(
            email=row.email, tenant_slug=tenant_slug(row.realm), expires_at=row.expires_at,
            password_min_length=found.password_min_length,
        )  # fmt: skip

    async def accept(self, token: str, password: str) -> InviteAccepted:
        """Burns the token, sets the password and enables the user, in the row's lock: a second
        accept of the same link waits, then finds it used."""
        async with self.db.session() as session:
            row = await self._usable(session, token, lock=True)
            weak = await policy.refused(
                session, row.realm, password, email=row.email, field="password", actor=row.email,
                tenant_id=row.tenant_id, target=f"invite:{row.id}",
            )  # fmt: skip
            if weak is None:
                await self._accept(session, row, password)
        if weak is not None:
            raise weak  # the link stays usable: nothing but the audit entry was written
        return InviteAccepted(email=row.email, tenant_slug=tenant_slug(row.realm))

    async def _accept(self, session: AsyncSession, row: InviteRow, password: str) -> None:
        await self.adapter.set_password(row.realm, row.email, password)
        await self.adapter.set_user_enabled(row.realm, row.user_id, True)
        row = await repo.mark(session, row.id, accepted_at=self.clock())
        await self._record(
            session, row.email, action="identity.invite.accepted", row=row,
            event=CoreEvent.USER_INVITE_ACCEPTED,
        )  # fmt: skip
