"""The contract between the tenancy saga and the domains that give a tenant its resources.

Tenancy runs ``apply`` for each step in order when a tenant is provisioned and, when a step fails,
``undo`` for the completed ones in reverse. Deletion runs ``purge`` for each step (forward-only,
resumable). Every method must be idempotent: a retry after a crash runs it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from uuid import UUID

# Every name made from a slug, and the longest each may be (ADR 0136). The slug rule is derived
# from this table, so a slug that passes works end to end: nothing is cut or refused later.
SCHEMA_PREFIX, BUCKET_PREFIX, REALM_PREFIX = "tenant_", "tenant-", "plexica-"
NAME_LIMITS = {
    SCHEMA_PREFIX: 63,  # PostgreSQL identifiers: 63 bytes (longer ones are silently truncated)
    BUCKET_PREFIX: 63,  # S3 bucket names: 3-63 characters
    REALM_PREFIX: 255,  # Keycloak realm names; also the OIDC issuer path segment
    "": 63,  # the web shell's <slug>.<base domain>: one DNS label
}
SLUG_MIN = 3
SLUG_MAX = min(limit - len(prefix) for prefix, limit in NAME_LIMITS.items())


def schema_of(slug: str) -> str:
    return SCHEMA_PREFIX + slug.replace("-", "_")


def bucket_of(slug: str) -> str:
    return BUCKET_PREFIX + slug


@dataclass(frozen=True)
class TenantRef:
    id: UUID
    slug: str
    name: str
    admin_email: str

    @property
    def schema(self) -> str:
        return schema_of(self.slug)

    @property
    def bucket(self) -> str:
        return bucket_of(self.slug)

    @property
    def realm(self) -> str:
        return REALM_PREFIX + self.slug


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
