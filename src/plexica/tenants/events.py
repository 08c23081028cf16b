"""Events of the tenant lifecycle, written to the outbox with the state change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.events import CoreEvent
from plexica.events.service import publish
from plexica.tenants.schemas import Tenant

PROVISIONED = CoreEvent.TENANT_PROVISIONED
SUSPENDED = CoreEvent.TENANT_SUSPENDED
REACTIVATED = CoreEvent.TENANT_REACTIVATED
DELETED = CoreEvent.TENANT_DELETED
FAILED = CoreEvent.TENANT_FAILED


async def emit(session: AsyncSession, type_: str, tenant: Tenant) -> None:
    await publish(
        session,
        type_,
        {
            "id": str(tenant.id),
            "slug": tenant.slug,
            "name": tenant.name,
            "state": tenant.state.value,
            "schema_version": tenant.schema_version,
        },
        tenant_id=tenant.id,
        subject=f"tenants/{tenant.id}",
    )
