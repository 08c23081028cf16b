"""The tenant of a request: from the verified token only, never from a client header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import request_db
from plexica.kit.security import PrincipalDep
from plexica.kit.state import configured, core_state
from plexica.tenants.schemas import State, Tenant
from plexica.tenants.service import TenantService
from plexica_sdk.context import Principal
from plexica_sdk.errors import ForbiddenError

current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)


class TenantSuspendedError(ForbiddenError):
    code = "tenant_suspended"


class TenantUnavailableError(ForbiddenError):
    code = "tenant_unavailable"


class TenantRequiredError(ForbiddenError):
    code = "tenant_required"


async def tenant_service(request: Request) -> TenantService:
    # async: a sync dependency would be run on a worker thread, a hop that costs milliseconds.
    services = configured(core_state(request).services, "the tenant service is not running")
    svc: TenantService = services.tenants
    return svc


TenantServiceDep = Annotated[TenantService, Depends(tenant_service)]


def admitted(tenant: Tenant | None, principal: Principal) -> Tenant:
    """The principal's tenant (found by its id) when it is in service, else the refusal."""
    # The same answer for an unknown tenant as for one not in service.
    if tenant is None or tenant.slug != (principal.tenant_slug or tenant.slug):
        raise TenantUnavailableError("this tenant is not available")
    if tenant.state is State.SUSPENDED:
        raise TenantSuspendedError("this tenant is suspended")
    if tenant.state is not State.ACTIVE:
        raise TenantUnavailableError("this tenant is not available")
    return tenant


async def get_tenant(principal: PrincipalDep, service: TenantServiceDep) -> Tenant:
    if principal.tenant_id is None:
        raise TenantRequiredError("this route acts in a tenant: use a token of a tenant's realm")
    tenant = admitted(await service.cache.get(principal.tenant_id), principal)
    current_tenant.set(tenant)
    structlog.contextvars.bind_contextvars(tenant_id=str(tenant.id), tenant_slug=tenant.slug)
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


async def tenant_session(request: Request, tenant: TenantDep) -> AsyncIterator[AsyncSession]:
    """A transaction whose search path is the tenant's schema (SET LOCAL), committed on success
    before the response is sent."""
    db = request_db(request)
    async with db.session(tenant.schema_name) as session:
        yield session


TenantSessionDep = Annotated[AsyncSession, Depends(tenant_session, scope="function")]
