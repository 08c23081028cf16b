"""The provisioning step that gives a tenant its bucket (and takes it away on deletion)."""

from __future__ import annotations

from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.storage import repository
from plexica.storage.keys import validate_bucket
from plexica.storage.store import ObjectStore


class BucketStep:
    name = "bucket"

    def __init__(self, store: ObjectStore, db: Database | None = None) -> None:
        self.store = store
        self.db = db

    async def apply(self, tenant: TenantRef) -> None:
        await self.store.create_bucket(tenant.bucket)
        if self.db is not None:
            async with self.db.session() as session:
                await repository.ensure(session, tenant.bucket, tenant.id)

    async def undo(self, tenant: TenantRef) -> None:
        await self.purge(tenant)

    async def purge(self, tenant: TenantRef) -> None:
        try:
            validate_bucket(tenant.bucket)
        except ValueError:
            # Not a name a bucket could have (a slug from before ADR 0136): nothing to remove.
            return
        await self.store.delete_bucket(tenant.bucket)
        if self.db is not None:
            async with self.db.session() as session:
                await repository.delete(session, tenant.bucket)
