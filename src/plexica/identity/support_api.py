"""``/v1/support-access`` (a tenant admin allows, or stops, support sessions for their tenant)
and ``/v1/support-sessions`` (an operator acts as one of a tenant's users; the session ends
itself), ADR 0240. Built-in provider only: with Keycloak, 409."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from plexica.identity.api import _noted, _tenant_of
from plexica.identity.schemas import (
    SupportAccess,
    SupportGrant,
    SupportGrantCreate,
    SupportSessionStart,
    SupportTokens,
)
from plexica.identity.service import now_utc
from plexica.identity.support import Support, SupportManagedByProviderError
from plexica.kit.db import request_db
from plexica.kit.security import OperatorDep, PrincipalDep
from plexica.kit.state import core_state
from plexica_sdk.context import TENANT_ADMIN, Principal
from plexica_sdk.errors import ForbiddenError

access_router = APIRouter(prefix="/v1/support-access", tags=["identity"])
sessions_router = APIRouter(prefix="/v1/support-sessions", tags=["identity"])

REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "The tenant does not allow support access now (`support_access_not_granted`,"
        " `support_access_expired`, `support_access_revoked`), or the caller may not do this"
    },
    409: {"description": "Support access is managed by the identity provider (Keycloak)"},
}


def support_of(request: Request) -> Support:
    settings = core_state(request).settings
    if settings.keycloak_url is not None:
        raise SupportManagedByProviderError
    clock = core_state(request).clock or now_utc
    return Support(request_db(request), settings.public_base_url, clock)


SupportDep = Annotated[Support, Depends(support_of)]


async def require_tenant_admin(principal: PrincipalDep) -> Principal:
    """The tenant's own admin, signed in as themselves: an operator in a support session may
    not widen or extend their own access."""
    if principal.is_service or TENANT_ADMIN not in principal.roles or principal.tenant_id is None:
        raise ForbiddenError("only the tenant's administrators decide on support access")
    if principal.acting_operator is not None:
        raise ForbiddenError(
            "a support session cannot change support access", code="support_session_forbidden"
        )
    return principal


TenantAdminDep = Annotated[Principal, Depends(require_tenant_admin)]


@access_router.get(
    "", summary="Whether operators may act as this tenant's users, and sessions", responses=REFUSALS
)
async def support_status(principal: TenantAdminDep, support: SupportDep) -> SupportAccess:
    return await support.status(_tenant_of(principal))


@access_router.put(
    "", summary="Allow support sessions for the next 1 to 72 hours", responses=REFUSALS
)
async def grant_support(
    principal: TenantAdminDep, body: SupportGrantCreate, support: SupportDep
) -> SupportGrant:
    return await support.grant(principal, _tenant_of(principal), body.hours)


@access_router.delete(
    "", summary="Withdraw support access now: running support sessions end", responses=REFUSALS
)
async def revoke_support(
    request: Request, principal: TenantAdminDep, support: SupportDep
) -> SupportGrant:
    revoked, cuts = await support.revoke(principal, _tenant_of(principal))
    _noted(request, *cuts)
    return revoked


@sessions_router.post(
    "", status_code=201, responses=REFUSALS,
    summary="Act as a tenant's user for at most 15 minutes (operators; the tenant must allow it)",
)  # fmt: skip
async def start_support_session(
    operator: OperatorDep, body: SupportSessionStart, support: SupportDep
) -> SupportTokens:
    if operator.is_service:
        raise ForbiddenError("a service token cannot start a support session")
    return await support.start(operator, body.tenant.strip().lower(), body.email)


@sessions_router.post(
    "/current/end", status_code=204, summary="End the caller's own support session now"
)
async def end_support_session(
    request: Request, principal: PrincipalDep, support: SupportDep
) -> Response:
    _noted(request, *await support.end(principal))
    return Response(status_code=204)


router = APIRouter()
router.include_router(access_router)
router.include_router(sessions_router)
