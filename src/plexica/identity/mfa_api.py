"""``/v1/me/mfa``: a user turns two-step sign-in (TOTP) on and off for their own account in the
built-in provider (ADR 0232). With Keycloak, its own OTP setup is the place: 409."""

from __future__ import annotations

import time
from uuid import UUID

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import mfa, service
from plexica.identity.api import Proof, WriteUsers, _realm_of, proving
from plexica.identity.schemas import (
    MfaCode,
    MfaStatus,
    RecoveryCodes,
    TotpEnrolment,
)
from plexica.kit.db import request_db
from plexica.kit.security import PrincipalDep
from plexica.kit.state import core_state
from plexica_sdk.context import Principal
from plexica_sdk.errors import ConflictError, ForbiddenError, NotFoundError

router = APIRouter(prefix="/v1/me/mfa", tags=["identity"])
users_router = APIRouter(prefix="/v1/users", tags=["identity"])


class MfaManagedByProviderError(ConflictError):
    code = "mfa_managed_by_provider"

    def __init__(self) -> None:
        super().__init__("two-step sign-in is set up in the identity provider's account console")


def _builtin(request: Request) -> None:
    settings = core_state(request).settings
    if settings.keycloak_url is not None:
        raise MfaManagedByProviderError


async def _me(request: Request, session: AsyncSession, principal: Principal) -> UUID:
    """The caller's own account in the built-in provider's registry."""
    _builtin(request)
    if principal.is_service:
        raise MfaManagedByProviderError
    if principal.acting_operator is not None:
        raise ForbiddenError(
            "a support session cannot change two-step sign-in", code="support_session_forbidden"
        )
    try:
        user_id = UUID(principal.subject)
    except ValueError:
        raise NotFoundError("no such user") from None
    await service.user_or_404(session, _realm_of(principal), user_id)
    return user_id


def _account(principal: Principal) -> tuple[str, str, str]:
    """Wrong codes are counted per account only, as wrong passwords are on a password change."""
    realm = f"mfa:{_realm_of(principal)}"
    return realm, principal.subject, f"{realm}:{principal.subject}"


@router.get("", summary="Whether two-step sign-in is on, and the recovery codes left")
async def mfa_status(request: Request, principal: PrincipalDep) -> MfaStatus:
    async with request_db(request).session() as session:
        found = await mfa.status(session, await _me(request, session, principal))
    return MfaStatus(enabled=found.enabled, recovery_codes_left=found.recovery_codes_left)


@router.post("/totp", status_code=201, summary="Start enrolling an authenticator app")
async def enrol(request: Request, principal: PrincipalDep) -> TotpEnrolment:
    issuer = mfa.issuer_label(_realm_of(principal))
    async with request_db(request).session() as session:
        user_id = await _me(request, session, principal)
        started = await mfa.begin(session, user_id, principal.email or principal.subject, issuer)
    return TotpEnrolment(secret=started.secret, otpauth_uri=started.uri)


@router.post("/totp/confirm", summary="Turn two-step sign-in on with a first code")
async def confirm(request: Request, principal: PrincipalDep, body: MfaCode) -> RecoveryCodes:
    return RecoveryCodes(recovery_codes=await _with_code(request, principal, body, on=True))


@router.post("/disable", summary="Turn two-step sign-in off (a current or recovery code)")
async def disable(request: Request, principal: PrincipalDep, body: MfaCode) -> MfaStatus:
    await _with_code(request, principal, body, on=False)
    return MfaStatus(enabled=False, recovery_codes_left=0)


async def _with_code(
    request: Request, principal: Principal, body: MfaCode, *, on: bool
) -> list[str]:
    target = f"user:{principal.subject}"
    wrong = Proof(mfa.InvalidCodeError, "wrong codes", "identity.mfa.code_failed")
    account = _account(principal)
    async with (
        proving(request, principal, account, wrong),
        request_db(request).session() as session,
    ):
        user_id = await _me(request, session, principal)
        if on:
            codes = await mfa.confirm(session, user_id, body.code, time.time())
        else:
            codes = []
            used = await mfa.disable(session, user_id, body.code, time.time())
        await audit.record(
            session, principal.actor, "identity.mfa." + ("enabled" if on else "disabled"),
            principal.tenant_id, target, after=None if on else {"proved_by": used},
        )  # fmt: skip
    return codes


@users_router.post(
    "/{user_id}/mfa/reset",
    summary="Turn a user's two-step sign-in off (they lost their app and recovery codes)",
)
async def reset(request: Request, user_id: UUID, admin: WriteUsers) -> MfaStatus:
    realm = _realm_of(admin)
    async with request_db(request).session() as session:
        await service.user_or_404(session, realm, user_id)
        await mfa.reset(session, user_id)
        await audit.record(
            session, admin.actor, "identity.user.mfa_reset", admin.tenant_id, f"user:{user_id}"
        )
    return MfaStatus(enabled=False, recovery_codes_left=0)
