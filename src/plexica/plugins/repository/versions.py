"""SQL of the plugin catalog: the registered versions of each plugin."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

VERSION_COLUMNS = "plugin_id, version, manifest, migrations, status, registered_at"


async def insert_version(
    session: AsyncSession,
    plugin_id: str,
    version: str,
    manifest: dict[str, Any],
    migrations: list[Any],
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.plugin_versions (plugin_id, version, manifest, migrations)"
            " VALUES (:p, :v, CAST(:m AS jsonb), CAST(:mig AS jsonb))"
        ),
        {"p": plugin_id, "v": version, "m": json.dumps(manifest), "mig": json.dumps(migrations)},
    )


async def get_version(session: AsyncSession, plugin_id: str, version: str) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                text(
                    f"SELECT {VERSION_COLUMNS} FROM platform.plugin_versions"  # noqa: S608
                    " WHERE plugin_id = :p AND version = :v"
                ),
                {"p": plugin_id, "v": version},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def list_versions(
    session: AsyncSession, plugin_id: str | None = None
) -> list[dict[str, Any]]:
    where = "WHERE plugin_id = :p" if plugin_id else ""
    rows = await session.execute(
        text(f"SELECT {VERSION_COLUMNS} FROM platform.plugin_versions {where}"),  # noqa: S608
        {"p": plugin_id},
    )
    return [dict(r) for r in rows.mappings()]


async def set_version_status(
    session: AsyncSession, plugin_id: str, version: str, status: str
) -> bool:
    column = {"published": "published_at", "deprecated": "deprecated_at"}[status]
    result = await session.execute(
        text(
            f"UPDATE platform.plugin_versions SET status = :s, {column} = now()"  # noqa: S608
            " WHERE plugin_id = :p AND version = :v"
        ),
        {"s": status, "p": plugin_id, "v": version},
    )
    return bool(getattr(result, "rowcount", 0))
