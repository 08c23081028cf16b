"""SQL of storage usage and quotas (platform schema)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class UsageRow:
    bucket: str
    tenant_id: UUID | None
    bytes_used: int
    objects: int
    quota_bytes: int | None
    max_object_bytes: int | None


_COLUMNS = "bucket, tenant_id, bytes_used, objects, quota_bytes, max_object_bytes"


async def ensure(session: AsyncSession, bucket: str, tenant_id: UUID | None) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.storage_usage (bucket, tenant_id) VALUES (:bucket, :tenant_id)"
            " ON CONFLICT (bucket) DO NOTHING"
        ),
        {"bucket": bucket, "tenant_id": tenant_id},
    )


async def get(session: AsyncSession, bucket: str, *, lock: bool = False) -> UsageRow | None:
    sql = f"SELECT {_COLUMNS} FROM platform.storage_usage WHERE bucket = :bucket"  # noqa: S608
    if lock:
        sql += " FOR UPDATE"
    row = (await session.execute(text(sql), {"bucket": bucket})).one_or_none()
    return None if row is None else UsageRow(*row)


async def add(session: AsyncSession, bucket: str, delta_bytes: int, delta_objects: int) -> None:
    await session.execute(
        text(
            "UPDATE platform.storage_usage SET bytes_used = GREATEST(bytes_used + :db, 0),"
            " objects = GREATEST(objects + :do, 0), updated_at = now() WHERE bucket = :bucket"
        ),
        {"bucket": bucket, "db": delta_bytes, "do": delta_objects},
    )


async def set_totals(session: AsyncSession, bucket: str, bytes_used: int, objects: int) -> None:
    await session.execute(
        text(
            "UPDATE platform.storage_usage SET bytes_used = :b, objects = :o, updated_at = now()"
            " WHERE bucket = :bucket"
        ),
        {"bucket": bucket, "b": bytes_used, "o": objects},
    )


async def set_limits(
    session: AsyncSession, bucket: str, quota_bytes: int | None, max_object_bytes: int | None
) -> None:
    await session.execute(
        text(
            "UPDATE platform.storage_usage SET quota_bytes = :q, max_object_bytes = :m,"
            " updated_at = now() WHERE bucket = :bucket"
        ),
        {"bucket": bucket, "q": quota_bytes, "m": max_object_bytes},
    )


async def delete(session: AsyncSession, bucket: str) -> None:
    await session.execute(
        text("DELETE FROM platform.storage_usage WHERE bucket = :bucket"), {"bucket": bucket}
    )


async def bytes_by_tenant(session: AsyncSession) -> dict[UUID, int]:
    rows = await session.execute(
        text(
            "SELECT tenant_id, sum(bytes_used) AS b FROM platform.storage_usage"
            " WHERE tenant_id IS NOT NULL GROUP BY tenant_id"
        )
    )
    return {r.tenant_id: int(r.b) for r in rows}
