"""The contract between the tenancy saga and the domains that give a tenant its resources.

Tenancy runs ``apply`` for each step in order when a tenant is provisioned and, when a step fails,
``undo`` for the completed ones in reverse. Deletion runs ``purge`` for each step (forward-only,
resumable). Every method must be idempotent: a retry after a crash runs it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID


@dataclass(frozen=True)
class TenantRef:
    id: UUID
    slug: str
    name: str
    admin_email: str

    @property
    def schema(self) -> str:
        return "tenant_" + self.slug.replace("-", "_")

    @property
    def bucket(self) -> str:
        return "tenant-" + self.slug

    @property
    def realm(self) -> str:
        return "plexica-" + self.slug


class ProvisioningStep(Protocol):
    name: str

    async def apply(self, tenant: TenantRef) -> None: ...

    async def undo(self, tenant: TenantRef) -> None: ...

    async def purge(self, tenant: TenantRef) -> None:
        """Remove the resource for good when the tenant is deleted."""
        ...


@runtime_checkable
class SuspendableStep(Protocol):
    """A step whose resource stops serving while the tenant is suspended (the identity realm
    refuses sign-ins). Tenancy calls ``suspend``/``resume`` inside the state change: a failure
    leaves the tenant in its state. Both must be idempotent."""

    async def suspend(self, tenant: TenantRef) -> None: ...

    async def resume(self, tenant: TenantRef) -> None: ...
