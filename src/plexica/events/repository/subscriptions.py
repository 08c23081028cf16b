"""Subscriptions: which plugin consumes which types, and where it is installed and active."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def set_subscriptions(session: AsyncSession, plugin_id: str, types: Sequence[str]) -> None:
    """Make the plugin's subscriptions exactly ``types``, touching only the rows that change.

    Installs and upgrades of one plugin run concurrently in many tenants: a delete-then-insert
    of the whole set collided (duplicate key) when two of them interleaved. Inserting what is
    missing (ON CONFLICT DO NOTHING waits for, then skips, a concurrent insert of the same row)
    and deleting only what is no longer wanted never conflicts; rows are taken in a sorted
    order so two writers cannot deadlock."""
    wanted = sorted(set(types))
    await session.execute(
        text(
            "DELETE FROM platform.event_subscriptions"
            " WHERE plugin_id = :p AND NOT (event_type = ANY(CAST(:types AS text[])))"
        ),
        {"p": plugin_id, "types": wanted},
    )
    if wanted:
        await session.execute(
            text(
                "INSERT INTO platform.event_subscriptions (plugin_id, event_type)"
                " SELECT :p, t FROM unnest(CAST(:types AS text[])) AS t ORDER BY t"
                " ON CONFLICT DO NOTHING"
            ),
            {"p": plugin_id, "types": wanted},
        )


async def set_consumer(
    session: AsyncSession, plugin_id: str, tenant_id: UUID, active: bool
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.event_consumers (plugin_id, tenant_id, active)"
            " VALUES (:p, :t, :a) ON CONFLICT (plugin_id, tenant_id)"
            " DO UPDATE SET active = excluded.active, updated_at = now()"
        ),
        {"p": plugin_id, "t": tenant_id, "a": active},
    )


async def delete_consumer(session: AsyncSession, plugin_id: str, tenant_id: UUID) -> None:
    await session.execute(
        text("DELETE FROM platform.event_consumers WHERE plugin_id = :p AND tenant_id = :t"),
        {"p": plugin_id, "t": tenant_id},
    )


async def is_active(session: AsyncSession, plugin_id: str, tenant_id: UUID) -> bool:
    result = await session.execute(
        text("SELECT active FROM platform.event_consumers WHERE plugin_id = :p AND tenant_id = :t"),
        {"p": plugin_id, "t": tenant_id},
    )
    return bool(result.scalar_one_or_none())


async def active_among(
    session: AsyncSession, plugin_id: str, tenant_ids: Sequence[UUID]
) -> set[UUID]:
    """Those of ``tenant_ids`` the plugin is installed and active for."""
    result = await session.execute(
        text(
            "SELECT tenant_id FROM platform.event_consumers"
            " WHERE plugin_id = :p AND tenant_id = ANY(CAST(:t AS uuid[])) AND active"
        ),
        {"p": plugin_id, "t": list(tenant_ids)},
    )
    return set(result.scalars())


async def subscribed_types(session: AsyncSession, plugin_id: str) -> list[str]:
    result = await session.execute(
        text("SELECT event_type FROM platform.event_subscriptions WHERE plugin_id = :p"),
        {"p": plugin_id},
    )
    return sorted(result.scalars())
