"""Events of the tenant lifecycle, written to the outbox with the state change."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.service import publish
from plexica.tenants.schemas import Tenant

PROVISIONED = "plexica.tenant.provisioned"
SUSPENDED = "plexica.tenant.suspended"
REACTIVATED = "plexica.tenant.reactivated"
DELETED = "plexica.tenant.deleted"
FAILED = "plexica.tenant.failed"


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
