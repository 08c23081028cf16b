"""Support access (ADR 0240): a tenant admin allows platform operators to act as the tenant's
users for a time window; an operator then starts a support session for one user, at most
``SESSION_SECONDS`` long, whose tokens carry both identities (``act``). Ending the session or
revoking the grant refuses its tokens everywhere through the revocation store (its ``sid``).

Every grant, revocation, start, refusal and end is audited. A refusal is recorded in a
transaction of its own, committed before the error is raised."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from plexica.audit import service as audit
from plexica.identity import repository, revocation, service, tokens
from plexica.identity import support_repository as repo
from plexica.identity.schemas import SupportAccess, SupportGrant, SupportTokens
from plexica.kit.db import Database
from plexica.kit.provisioning import REALM_PREFIX
from plexica_sdk.context import Principal
from plexica_sdk.errors import ConflictError, ForbiddenError, NotFoundError
from plexica_sdk.revocation import Revocation

SESSION_SECONDS = 15 * 60
Clock = Callable[[], datetime]


class SupportManagedByProviderError(ConflictError):
    code = "support_access_managed_by_provider"

    def __init__(self) -> None:
        super().__init__(
            "support access is a feature of the built-in identity provider; with Keycloak, use"
            " its own impersonation under its own policies"
        )


class SupportRefusedError(ForbiddenError):
    """Why an operator may not act as the tenant's user now (the code says which)."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, code=code, details=details)


def _refusal(grant: SupportGrant | None, now: datetime) -> tuple[str, str]:
    if grant is None:
        return "support_access_not_granted", "this tenant has not allowed support access"
    if grant.revoked_at is not None:
        return "support_access_revoked", "this tenant withdrew its support access"
    when = grant.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return "support_access_expired", f"this tenant's support access expired at {when}"


class Support:
    def __init__(self, db: Database, base_url: str, clock: Clock = service.now_utc) -> None:
        self.db = db
        self.base_url = base_url
        self.clock = clock

    # --- the tenant admin's side -------------------------------------------------------------

    async def status(self, tenant_id: UUID) -> SupportAccess:
        async with self.db.session() as session:
            grant = await repo.live_grant(session, tenant_id, self.clock())
            return SupportAccess(
                grant=grant, sessions=await repo.recent_sessions(session, tenant_id)
            )

    async def grant(self, admin: Principal, tenant_id: UUID, hours: int) -> SupportGrant:
        now = self.clock()
        realm = _realm(admin)
        async with self.db.session() as session:
            made = await repo.put_grant(
                session, uuid.uuid4(), tenant_id, realm, admin.actor, now,
                now + timedelta(hours=hours),
            )  # fmt: skip
            await audit.record(
                session, admin.actor, "identity.support.granted", tenant_id,
                f"support_grant:{made.id}", after=made.model_dump(mode="json") | {"hours": hours},
            )  # fmt: skip
        return made

    async def revoke(
        self, admin: Principal, tenant_id: UUID
    ) -> tuple[SupportGrant, list[Revocation]]:
        now = self.clock()
        async with self.db.session() as session:
            revoked = await repo.revoke_grant(session, tenant_id, admin.actor, now)
            if revoked is None:
                raise NotFoundError(
                    "support access is not granted", code="support_access_not_granted"
                )
            ended = await repo.end_sessions(
                session, grant_id=revoked.id, now=now, reason="grant_revoked"
            )
            cuts = [await revocation.end_session(session, _realm(admin), str(s.id)) for s in ended]
            await audit.record(
                session, admin.actor, "identity.support.revoked", tenant_id,
                f"support_grant:{revoked.id}",
                after={"sessions_ended": [str(s.id) for s in ended]},
            )  # fmt: skip
        return revoked, cuts

    # --- the operator's side -----------------------------------------------------------------

    async def start(self, operator: Principal, slug: str, email: str) -> SupportTokens:
        now = self.clock()
        realm_id = REALM_PREFIX + slug
        async with self.db.session() as session:
            realm = await repository.get_realm(session, realm_id)
            if realm is None or realm["tenant_id"] is None:
                raise NotFoundError("no such tenant", code="tenant_not_found")
            tenant_id: UUID = realm["tenant_id"]
            grant = await repo.live_grant(session, tenant_id, now)
            latest = grant or await repo.latest_grant(session, tenant_id)
            user = await repository.user_by_email(session, realm_id, email)
        tried = {"operator": operator.actor, "user": email}
        if grant is None:
            code, message = _refusal(latest, now)
            await self._refused(operator, tenant_id, code, tried | _window(latest))
            raise SupportRefusedError(code, message, tried | _window(latest))
        if user is None or not user["enabled"] or not realm["enabled"]:
            await self._refused(operator, tenant_id, "support_user_not_found", tried)
            raise NotFoundError("no enabled user has that e-mail here", code="user_not_found")
        return await self._issue(operator, realm, grant, user, now)

    async def _issue(
        self, operator: Principal, realm: dict[str, Any], grant: SupportGrant,
        user: dict[str, Any], now: datetime,
    ) -> SupportTokens:  # fmt: skip
        expires_at = min(now + timedelta(seconds=SESSION_SECONDS), grant.expires_at)
        act = {"sub": operator.subject, "email": operator.email or operator.subject}
        sid = uuid.uuid4()
        async with self.db.session() as session:
            client = await repository.get_client(session, realm["name"], service.WEB_CLIENT)
            if client is None:
                raise NotFoundError("no such tenant", code="tenant_not_found")
            started = await repo.insert_session(
                session, session_id=sid, grant_id=grant.id, realm=realm["name"],
                user_id=user["id"], user_email=user["email"], operator_subject=operator.subject,
                operator_email=act["email"], now=now, expires_at=expires_at,
            )  # fmt: skip
            access, id_token, lifetime = await tokens.support_tokens(
                session, realm, client, user, sid=sid, act=act, expires_at=expires_at,
                base_url=self.base_url,
            )  # fmt: skip
            await audit.record(
                session, operator.actor, "identity.support.session_started", realm["tenant_id"],
                f"user:{user['id']}", after=started.model_dump(mode="json"),
            )  # fmt: skip
        return SupportTokens(
            access_token=access, expires_in=lifetime, id_token=id_token, session=started
        )

    async def _refused(
        self, operator: Principal, tenant_id: UUID, code: str, details: dict[str, Any]
    ) -> None:
        async with self.db.session() as session:
            await audit.record(
                session, operator.actor, "identity.support.session_refused", tenant_id, None,
                after={"reason": code, **details},
            )  # fmt: skip

    # --- the support session itself ----------------------------------------------------------

    async def end(self, principal: Principal) -> list[Revocation]:
        """The operator ends their support session (its tokens are refused from now on)."""
        if principal.acting_operator is None or principal.session_id is None:
            raise ForbiddenError("this is not a support session", code="not_a_support_session")
        now = self.clock()
        sid = UUID(principal.session_id)
        async with self.db.session() as session:
            ended = await repo.end_sessions(session, session_id=sid, now=now, reason="ended")
            cut = await revocation.end_session(session, _realm(principal), str(sid))
            if ended:
                await audit.record(
                    session, principal.actor, "identity.support.session_ended",
                    principal.tenant_id, f"user:{principal.subject}",
                    after=ended[0].model_dump(mode="json"),
                )  # fmt: skip
        return [cut]


def _realm(principal: Principal) -> str:
    return REALM_PREFIX + (principal.tenant_slug or "")


def _window(grant: SupportGrant | None) -> dict[str, Any]:
    if grant is None:
        return {}
    revoked = grant.revoked_at.isoformat() if grant.revoked_at else None
    return {"granted_until": grant.expires_at.isoformat(), "revoked_at": revoked}
