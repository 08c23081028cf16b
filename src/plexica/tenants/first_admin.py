"""The first admin's invitation seen from a tenant (ADR 0242), for the API and the CLI alike."""

from __future__ import annotations

from uuid import UUID

from plexica.identity.first_admin import FirstAdmin
from plexica.identity.schemas import AdminInvite, Invite
from plexica.tenants.schemas import State
from plexica.tenants.service import TenantService
from plexica_sdk.errors import ConflictError


async def admin_invite(tenants: TenantService, admin: FirstAdmin, key: UUID | str) -> AdminInvite:
    return await admin.status((await tenants.get(key)).ref)


async def invite_admin_again(
    tenants: TenantService, admin: FirstAdmin, key: UUID | str, actor: str
) -> Invite:
    """Only once the tenant is active: while it is provisioning, its last step sends the mail."""
    tenant = await tenants.get(key)
    if tenant.state is not State.ACTIVE:
        raise ConflictError(
            f"the tenant is {tenant.state.value}: its admin is invited once it is active",
            code="tenant_not_active", details={"state": tenant.state.value},
        )  # fmt: skip
    return await admin.send_again(tenant.ref, actor)
