"""Per-tenant object storage: limits, content types and usage around an ObjectStore.

An upload is received into a staged upload (nothing visible), then committed while the tenant's
usage row is locked, so that concurrent uploads cannot together exceed the quota. Any refusal
aborts the staged upload: a refused write leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable
from dataclasses import dataclass
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.provisioning import BUCKET_PREFIX, SLUG_MAX, SLUG_MIN
from plexica.storage import repository
from plexica.storage.errors import (
    ObjectTooLargeError,
    QuotaExceededError,
    UnsupportedContentTypeError,
)
from plexica.storage.keys import validate_key
from plexica.storage.sniff import DEFAULT_ALLOWED, SNIFF_BYTES, resolve_content_type
from plexica.storage.store import (
    Method,
    ObjectInfo,
    ObjectPage,
    ObjectStore,
    PresignedUrl,
    StagedUpload,
)
from plexica_sdk.errors import ForbiddenError, NotFoundError, PlexicaError

SLUG_PATTERN = rf"^[a-z][a-z0-9-]{{{SLUG_MIN - 2},{SLUG_MAX - 2}}}[a-z0-9]$"
_SLUG_RE = re.compile(SLUG_PATTERN)
UPLOADED_BYTES = Counter("plexica_storage_uploaded_bytes", "Bytes of objects committed.")
REFUSED = Counter(
    "plexica_storage_refused_uploads", "Uploads refused before anything was written.", ["code"]
)
GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class StorageLimits:
    quota_bytes: int = 5 * GiB
    max_object_bytes: int = 256 * MiB
    allowed_types: frozenset[str] = DEFAULT_ALLOWED
    max_expiry_seconds: int = 3600
    default_expiry_seconds: int = 300


@dataclass(frozen=True)
class Scope:
    """Where a caller's objects live: the tenant's bucket."""

    bucket: str
    tenant_id: UUID | None

    @classmethod
    def of_tenant(cls, tenant_id: UUID | None, slug: str | None) -> Scope:
        if not slug:
            raise ForbiddenError("files belong to a tenant: this caller has none")
        if not _SLUG_RE.match(slug):
            raise PlexicaError(f"not a tenant slug: {slug!r}", code="invalid_slug")
        return cls(BUCKET_PREFIX + slug, tenant_id)


@dataclass(frozen=True)
class Usage:
    bytes_used: int
    objects: int
    quota_bytes: int
    max_object_bytes: int


@dataclass
class UploadPlan:
    key: str
    existing: ObjectInfo | None
    usage: Usage
    exact_size: int | None = None
    exact_type: str | None = None
    charged: bool = False

    @property
    def cap(self) -> int:
        """The most bytes this upload may bring before it is refused."""
        room = self.usage.quota_bytes - self.usage.bytes_used + self._old_size
        return min(self.usage.max_object_bytes, max(room, 0))

    @property
    def _old_size(self) -> int:
        return self.existing.size if self.existing else 0


@dataclass
class Received:
    plan: UploadPlan
    upload: StagedUpload
    content_type: str


class StorageService:
    def __init__(self, store: ObjectStore, limits: StorageLimits | None = None) -> None:
        self.store = store
        self.limits = limits or StorageLimits()

    async def usage(self, session: AsyncSession, scope: Scope, *, lock: bool = False) -> Usage:
        await repository.ensure(session, scope.bucket, scope.tenant_id)
        row = await repository.get(session, scope.bucket, lock=lock)
        assert row is not None
        return Usage(
            row.bytes_used,
            row.objects,
            row.quota_bytes if row.quota_bytes is not None else self.limits.quota_bytes,
            row.max_object_bytes
            if row.max_object_bytes is not None
            else self.limits.max_object_bytes,
        )

    async def set_limits(
        self,
        session: AsyncSession,
        scope: Scope,
        quota_bytes: int | None,
        max_object_bytes: int | None,
    ) -> Usage:
        await repository.ensure(session, scope.bucket, scope.tenant_id)
        await repository.set_limits(session, scope.bucket, quota_bytes, max_object_bytes)
        return await self.usage(session, scope)

    async def plan_upload(
        self, session: AsyncSession, scope: Scope, key: str, declared_size: int | None = None
    ) -> UploadPlan:
        key = validate_key(key)
        if not await self.store.bucket_exists(scope.bucket):
            # Tenants provisioned before storage existed get their bucket on first write.
            await self.store.create_bucket(scope.bucket)
        plan = UploadPlan(
            key, await self.store.head(scope.bucket, key), await self.usage(session, scope)
        )
        if declared_size is not None:
            self._check_size(plan, declared_size)
        return plan

    def _check_size(self, plan: UploadPlan, size: int) -> None:
        if size > plan.usage.max_object_bytes:
            raise ObjectTooLargeError(
                f"the object is larger than {plan.usage.max_object_bytes} bytes",
                details={"max_object_bytes": plan.usage.max_object_bytes},
            )
        if size > plan.cap:
            raise QuotaExceededError(
                "the tenant's storage quota would be exceeded",
                details={"quota_bytes": plan.usage.quota_bytes, "used": plan.usage.bytes_used},
            )

    async def receive(
        self,
        scope: Scope,
        plan: UploadPlan,
        declared_type: str | None,
        body: AsyncIterable[bytes],
    ) -> Received:
        """Read the body into a staged upload; refuse (and leave nothing) past the limits."""
        head = bytearray()
        received: Received | None = None
        try:
            async for chunk in body:
                if not chunk:
                    continue
                if received is None:
                    head += chunk
                    if len(head) < SNIFF_BYTES:
                        continue
                    received = await self._start(scope, plan, declared_type, bytes(head))
                    await self._feed(received, plan, bytes(head))
                    continue
                await self._feed(received, plan, chunk)
            if received is None:
                received = await self._start(scope, plan, declared_type, bytes(head))
                if head:
                    await self._feed(received, plan, bytes(head))
            if plan.exact_size is not None and received.upload.size != plan.exact_size:
                raise PlexicaError(  # noqa: TRY301 - aborted just below like any other refusal
                    "the body does not have the signed length", code="length_mismatch"
                )
        except BaseException:
            if received is not None:
                await received.upload.abort()
            raise
        return received

    async def _start(
        self, scope: Scope, plan: UploadPlan, declared_type: str | None, head: bytes
    ) -> Received:
        content_type = resolve_content_type(head, declared_type, self.limits.allowed_types)
        if plan.exact_type is not None and content_type != plan.exact_type:
            raise UnsupportedContentTypeError(
                f"the content is {content_type}, the URL was signed for {plan.exact_type}"
            )
        upload = await self.store.begin_upload(scope.bucket, plan.key, content_type)
        return Received(plan, upload, content_type)

    async def _feed(self, received: Received, plan: UploadPlan, chunk: bytes) -> None:
        self._check_size(plan, received.upload.size + len(chunk))
        await received.upload.write(chunk)

    async def commit(self, session: AsyncSession, scope: Scope, received: Received) -> ObjectInfo:
        """Make the upload visible if the quota still allows it (usage row locked)."""
        plan = received.plan
        try:
            usage = await self.usage(session, scope, lock=True)
            existing = await self.store.head(scope.bucket, plan.key)
            old = existing.size if existing else 0
            size = received.upload.size
            if not plan.charged:
                self._check_commit(usage, size, old)
            info = await received.upload.commit()
        except BaseException:
            await received.upload.abort()
            raise
        UPLOADED_BYTES.inc(size)
        if not plan.charged:
            await repository.add(session, scope.bucket, size - old, 0 if existing else 1)
        return info

    @staticmethod
    def _check_commit(usage: Usage, size: int, old: int) -> None:
        if size > usage.max_object_bytes:
            raise ObjectTooLargeError("the object is too large")
        if usage.bytes_used - old + size > usage.quota_bytes:
            raise QuotaExceededError(
                "the tenant's storage quota would be exceeded",
                details={"quota_bytes": usage.quota_bytes, "used": usage.bytes_used},
            )

    async def open(self, scope: Scope, key: str) -> tuple[ObjectInfo, AsyncIterable[bytes]]:
        return await self.store.get(scope.bucket, validate_key(key))

    async def list(self, scope: Scope, prefix: str, after: str | None, limit: int) -> ObjectPage:
        prefix = validate_key(prefix, prefix=True)
        if after is not None:
            after = validate_key(after)
        return await self.store.list(scope.bucket, prefix, after, limit)

    async def delete(self, session: AsyncSession, scope: Scope, key: str) -> None:
        key = validate_key(key)
        await self.usage(session, scope, lock=True)
        existing = await self.store.head(scope.bucket, key)
        if existing is None:
            raise NotFoundError("no such object")
        await self.store.delete(scope.bucket, key)
        await repository.add(session, scope.bucket, -existing.size, -1)

    async def presign(
        self,
        session: AsyncSession,
        scope: Scope,
        key: str,
        method: Method,
        *,
        expires_in: int | None,
        content_type: str | None = None,
        size: int | None = None,
    ) -> PresignedUrl:
        key = validate_key(key)
        ttl = expires_in or self.limits.default_expiry_seconds
        if not 1 <= ttl <= self.limits.max_expiry_seconds:
            raise PlexicaError(
                f"expires_in must be between 1 and {self.limits.max_expiry_seconds} seconds",
                code="invalid_expiry",
            )
        if method == "GET":
            if await self.store.head(scope.bucket, key) is None:
                raise NotFoundError("no such object")
            return await self.store.presign(scope.bucket, key, "GET", ttl)
        if content_type is None or size is None:
            raise PlexicaError("a presigned upload needs content_type and size", code="bad_request")
        base = content_type.split(";", 1)[0].strip().lower()
        if base not in self.limits.allowed_types:
            raise UnsupportedContentTypeError(f"content type {base} is not allowed")
        await self.usage(session, scope, lock=True)
        plan = await self.plan_upload(session, scope, key, declared_size=size)
        if self.store.kind != "local":
            # S3 receives the bytes directly: charge the declared size now (the signature pins
            # the length), since the core will not see the upload.
            old = plan.existing.size if plan.existing else 0
            await repository.add(session, scope.bucket, size - old, 0 if plan.existing else 1)
        return await self.store.presign(scope.bucket, key, "PUT", ttl, content_type=base, size=size)

    async def reconcile(self, session: AsyncSession, scope: Scope) -> Usage:
        """Recount a bucket's usage from the store (after direct uploads or a crash)."""
        await self.usage(session, scope, lock=True)
        total = count = 0
        after: str | None = None
        while True:
            page = await self.store.list(scope.bucket, "", after, 1000)
            total += sum(o.size for o in page.items)
            count += len(page.items)
            if page.next_after is None:
                break
            after = page.next_after
        await repository.set_totals(session, scope.bucket, total, count)
        return await self.usage(session, scope)


async def bytes_by_tenant(session: AsyncSession) -> dict[UUID, int]:
    """Bytes stored per tenant, all its buckets together (the usage rows, not a listing)."""
    return await repository.bytes_by_tenant(session)
