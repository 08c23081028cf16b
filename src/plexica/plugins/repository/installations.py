"""SQL of the installations of plugins in tenants, their lease, and the tenant's slug."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

INSTALL_COLUMNS = (
    "tenant_id, plugin_id, tenant_slug, version, status, reason, settings, applied_migrations,"
    " db_role, retain_until, updated_at, pending_version"
)


async def get_installation(
    session: AsyncSession, tenant_id: UUID, plugin_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                text(
                    f"SELECT {INSTALL_COLUMNS} FROM platform.plugin_installations"  # noqa: S608
                    " WHERE tenant_id = :t AND plugin_id = :p" + (" FOR UPDATE" if lock else "")
                ),
                {"t": tenant_id, "p": plugin_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def interrupted_installations(session: AsyncSession) -> list[dict[str, Any]]:
    """Installations an install, restore or upgrade is working on, or was when it died."""
    rows = await session.execute(
        text(
            f"SELECT {INSTALL_COLUMNS} FROM platform.plugin_installations"  # noqa: S608
            " WHERE status = 'installing' OR pending_version IS NOT NULL"
            " ORDER BY tenant_id, plugin_id"
        )
    )
    return [dict(r) for r in rows.mappings()]


def _lease_key(tenant_id: UUID, plugin_id: str) -> str:
    return f"plexica.plugin.lease.{tenant_id}.{plugin_id}"


async def try_lease(conn: AsyncConnection, tenant_id: UUID, plugin_id: str) -> bool:
    """A session lock held while a plugin's install, upgrade or recovery runs in a tenant; the
    server frees it if the holder dies."""
    got = await conn.execute(
        text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": _lease_key(tenant_id, plugin_id)}
    )
    return bool(got.scalar_one())


async def release_lease(conn: AsyncConnection, tenant_id: UUID, plugin_id: str) -> None:
    await conn.execute(
        text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": _lease_key(tenant_id, plugin_id)}
    )


async def list_installations(
    session: AsyncSession, tenant_id: UUID | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if tenant_id is not None:
        clauses.append("tenant_id = :t")
        params["t"] = tenant_id
    if status is not None:
        clauses.append("status = :s")
        params["s"] = status
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = await session.execute(
        text(
            f"SELECT {INSTALL_COLUMNS} FROM platform.plugin_installations {where}"  # noqa: S608
            " ORDER BY tenant_id, plugin_id"
        ),
        params,
    )
    return [dict(r) for r in rows.mappings()]


async def upsert_installation(
    session: AsyncSession,
    *,
    tenant_id: UUID,
    tenant_slug: str,
    plugin_id: str,
    version: str,
    status: str,
    db_role: str,
    settings: dict[str, Any],
    reason: str | None = None,
    unless: Sequence[str] = (),
) -> bool:
    """Insert or overwrite the installation; False, changing nothing, when the row exists with
    a status in ``unless``. A parallel insert of the same row waits for the first to commit and
    then sees its status, so of two parallel installs one wins and the other gets False."""
    result = await session.execute(
        text(
            "INSERT INTO platform.plugin_installations (tenant_id, plugin_id, tenant_slug, version,"
            " status, reason, settings, db_role) VALUES (:t, :p, :slug, :v, :s, :r,"
            " CAST(:settings AS jsonb), :role) ON CONFLICT (tenant_id, plugin_id) DO UPDATE SET"
            " tenant_slug = EXCLUDED.tenant_slug, version = EXCLUDED.version,"
            " status = EXCLUDED.status, reason = EXCLUDED.reason, settings = EXCLUDED.settings,"
            " updated_at = now()"
            " WHERE NOT (plugin_installations.status = ANY(CAST(:unless AS text[]))) RETURNING 1"
        ),
        {
            "unless": list(unless),
            "t": tenant_id,
            "p": plugin_id,
            "slug": tenant_slug,
            "v": version,
            "s": status,
            "r": reason,
            "settings": json.dumps(settings),
            "role": db_role,
        },
    )
    return result.scalar_one_or_none() is not None


async def update_installation(
    session: AsyncSession, tenant_id: UUID, plugin_id: str, **values: Any
) -> None:
    sets, params = [], {"t": tenant_id, "p": plugin_id}
    for key, value in values.items():
        if key in ("settings", "applied_migrations"):
            sets.append(f"{key} = CAST(:{key} AS jsonb)")
            params[key] = json.dumps(value)
        else:
            sets.append(f"{key} = :{key}")
            params[key] = value
    await session.execute(
        text(
            f"UPDATE platform.plugin_installations SET {', '.join(sets)}, updated_at = now()"  # noqa: S608
            " WHERE tenant_id = :t AND plugin_id = :p"
        ),
        params,
    )


async def delete_installation(session: AsyncSession, tenant_id: UUID, plugin_id: str) -> None:
    await session.execute(
        text("DELETE FROM platform.plugin_installations WHERE tenant_id = :t AND plugin_id = :p"),
        {"t": tenant_id, "p": plugin_id},
    )


async def installed_plugin_ids(session: AsyncSession) -> list[str]:
    """Plugins active or disabled in at least one tenant."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT plugin_id FROM platform.plugin_installations"
            " WHERE status IN ('active', 'disabled') ORDER BY plugin_id"
        )
    )
    return [str(r) for r in rows.scalars()]


async def expired_installations(session: AsyncSession, now: datetime) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            f"SELECT {INSTALL_COLUMNS} FROM platform.plugin_installations"  # noqa: S608
            " WHERE status = 'uninstalled' AND retain_until < :now"
        ),
        {"now": now},
    )
    return [dict(r) for r in rows.mappings()]


# A question about a tenant, asked of the tenancy domain's table, then of past installations.
_SLUG_OF_ID = (
    "SELECT slug FROM platform.tenants WHERE id = :key",
    "SELECT tenant_slug FROM platform.plugin_installations WHERE tenant_id = :key LIMIT 1",
)
_ID_OF_SLUG = (
    "SELECT id FROM platform.tenants WHERE slug = :key",
    "SELECT tenant_id FROM platform.plugin_installations WHERE tenant_slug = :key LIMIT 1",
)


async def _tenants_then_installations(
    session: AsyncSession, question: tuple[str, str], key: object
) -> Any:
    """The answer from the tenancy domain's table when it exists and has one, else from the
    plugin installations of the past."""
    of_tenants, of_installations = question
    has_tenants = (
        await session.execute(text("SELECT to_regclass('platform.tenants') IS NOT NULL"))
    ).scalar()
    if has_tenants:
        found = (await session.execute(text(of_tenants), {"key": key})).scalar()
        if found is not None:
            return found
    return (await session.execute(text(of_installations), {"key": key})).scalar()


async def tenant_slug(session: AsyncSession, tenant_id: UUID) -> str | None:
    slug = await _tenants_then_installations(session, _SLUG_OF_ID, tenant_id)
    return str(slug) if slug is not None else None


async def tenant_id_by_slug(session: AsyncSession, slug: str) -> UUID | None:
    found = await _tenants_then_installations(session, _ID_OF_SLUG, slug)
    return UUID(str(found)) if found is not None else None


async def count_installations(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = await session.execute(
        text(
            "SELECT plugin_id, status, count(*) AS n FROM platform.plugin_installations"
            " GROUP BY plugin_id, status"
        )
    )
    return {(r.plugin_id, r.status): int(r.n) for r in rows}
