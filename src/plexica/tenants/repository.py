"""SQL of tenancy: the platform tables and the DDL of tenant schemas."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from plexica.kit.db import quote_ident
from plexica.kit.provisioning import schema_of
from plexica.tenants.model import TENANT_METADATA
from plexica.tenants.schemas import Phase, Setting, State, Step, StepStatus, Tenant, Transition

_COLUMNS = (
    "id, slug, name, admin_email, state, schema_version, failure_reason, created_at,"
    " updated_at, deleted_at"
)


class SlugTakenError(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _tenant(row: Any) -> Tenant:
    return Tenant(
        id=row.id,
        slug=row.slug,
        name=row.name,
        admin_email=row.admin_email,
        state=State(row.state),
        schema_name=schema_of(row.slug),
        schema_version=row.schema_version,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


async def insert_tenant(
    session: AsyncSession,
    tenant_id: UUID,
    slug: str,
    name: str,
    admin_email: str,
    *,
    reason: str | None = None,
) -> Tenant:
    now = _now()
    # No savepoint: a taken slug aborts the caller's transaction, which then rolls back.
    try:
        row = (
            await session.execute(
                text(
                    "INSERT INTO platform.tenants (id, slug, name, admin_email, state,"  # noqa: S608 - constant column list
                    " created_at, updated_at) VALUES (:id, :slug, :name, :email,"
                    f" 'provisioning', :now, :now) RETURNING {_COLUMNS}"
                ),
                {"id": tenant_id, "slug": slug, "name": name, "email": admin_email, "now": now},
            )
        ).one()
    except IntegrityError as exc:
        if "tenants_slug_live" in str(exc.orig):
            raise SlugTakenError(slug) from None
        raise
    await insert_history(session, tenant_id, None, State.PROVISIONING, reason)
    return _tenant(row)


async def insert_history(
    session: AsyncSession, tenant_id: UUID, from_state: State | None, to: State, reason: str | None
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.tenant_state_history (tenant_id, from_state, to_state, reason,"
            " at) VALUES (:id, :from_state, :to_state, :reason, :at)"
        ),
        {"id": tenant_id, "from_state": from_state, "to_state": to, "reason": reason, "at": _now()},
    )


async def get(session: AsyncSession, tenant_id: UUID, *, lock: bool = False) -> Tenant | None:
    row = (
        await session.execute(
            text(
                f"SELECT {_COLUMNS} FROM platform.tenants WHERE id = :id"  # noqa: S608 - constant column list
                + (" FOR UPDATE" if lock else "")
            ),
            {"id": tenant_id},
        )
    ).one_or_none()
    return _tenant(row) if row else None


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    row = (
        await session.execute(
            text(
                f"SELECT {_COLUMNS} FROM platform.tenants WHERE slug = :slug"  # noqa: S608 - constant column list
                " ORDER BY (state = 'deleted'), created_at DESC LIMIT 1"
            ),
            {"slug": slug},
        )
    ).one_or_none()
    return _tenant(row) if row else None


async def list_page(
    session: AsyncSession, *, state: State | None, after: str | None, limit: int
) -> list[Tenant]:
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        where.append("state = :state")
        params["state"] = state
    else:
        where.append("state <> 'deleted'")
    if after is not None:
        where.append("slug > :after")
        params["after"] = after
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM platform.tenants WHERE {' AND '.join(where)}"  # noqa: S608 - constant column list
            " ORDER BY slug LIMIT :limit"
        ),
        params,
    )
    return [_tenant(r) for r in rows]


async def set_state(
    session: AsyncSession,
    tenant_id: UUID,
    from_state: State,
    to: State,
    *,
    reason: str | None = None,
    failure_reason: str | None = None,
) -> Tenant:
    row = (
        await session.execute(
            text(
                "UPDATE platform.tenants SET state = :to, failure_reason = :failure,"  # noqa: S608 - constant column list
                " updated_at = :now, deleted_at = CASE WHEN :to = 'deleted' THEN :now"
                f" ELSE deleted_at END WHERE id = :id RETURNING {_COLUMNS}"
            ),
            {"id": tenant_id, "to": to, "failure": failure_reason, "now": _now()},
        )
    ).one()
    await insert_history(session, tenant_id, from_state, to, reason or failure_reason)
    return _tenant(row)


async def set_name(session: AsyncSession, tenant_id: UUID, name: str) -> None:
    await session.execute(
        text("UPDATE platform.tenants SET name = :n, updated_at = :now WHERE id = :id"),
        {"id": tenant_id, "n": name, "now": _now()},
    )


async def set_failure_reason(session: AsyncSession, tenant_id: UUID, reason: str | None) -> None:
    await session.execute(
        text("UPDATE platform.tenants SET failure_reason = :r, updated_at = :now WHERE id = :id"),
        {"id": tenant_id, "r": reason, "now": _now()},
    )


async def set_schema_version(
    session: AsyncSession | AsyncConnection, tenant_id: UUID, version: str | None
) -> None:
    await session.execute(
        text("UPDATE platform.tenants SET schema_version = :v WHERE id = :id"),
        {"id": tenant_id, "v": version},
    )


# -- steps -------------------------------------------------------------------------------------


async def plan_steps(
    session: AsyncSession, tenant_id: UUID, phase: Phase, names: Sequence[str]
) -> None:
    """Record the steps of a phase as pending; steps already recorded keep their status."""
    now = _now()
    for position, name in enumerate(names):
        await session.execute(
            text(
                "INSERT INTO platform.tenant_steps (tenant_id, phase, position, name, status,"
                " updated_at) VALUES (:id, :phase, :pos, :name, 'pending', :now)"
                " ON CONFLICT (tenant_id, phase, name) DO UPDATE SET position = EXCLUDED.position"
            ),
            {"id": tenant_id, "phase": phase, "pos": position, "name": name, "now": now},
        )


async def reset_steps(session: AsyncSession, tenant_id: UUID, phase: Phase) -> None:
    await session.execute(
        text(
            "UPDATE platform.tenant_steps SET status = 'pending', error = NULL, updated_at = :now"
            " WHERE tenant_id = :id AND phase = :phase"
        ),
        {"id": tenant_id, "phase": phase, "now": _now()},
    )


async def set_step(
    session: AsyncSession,
    tenant_id: UUID,
    phase: Phase,
    name: str,
    *,
    status: StepStatus,
    error: str | None = None,
) -> None:
    await session.execute(
        text(
            "UPDATE platform.tenant_steps SET status = :status, error = :error, updated_at = :now,"
            " attempts = attempts + CASE WHEN :status = 'running' THEN 1 ELSE 0 END"
            " WHERE tenant_id = :id AND phase = :phase AND name = :name"
        ),
        {
            "id": tenant_id,
            "phase": phase,
            "name": name,
            "status": status,
            "error": error,
            "now": _now(),
        },
    )


async def steps(session: AsyncSession, tenant_id: UUID) -> list[Step]:
    rows = await session.execute(
        text(
            "SELECT phase, position, name, status, error, attempts, updated_at"
            " FROM platform.tenant_steps WHERE tenant_id = :id ORDER BY phase DESC, position"
        ),
        {"id": tenant_id},
    )
    return [
        Step(
            phase=Phase(r.phase),
            position=r.position,
            name=r.name,
            status=StepStatus(r.status),
            error=r.error,
            attempts=r.attempts,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


async def history(session: AsyncSession, tenant_id: UUID) -> list[Transition]:
    rows = await session.execute(
        text(
            "SELECT from_state, to_state, reason, at FROM platform.tenant_state_history"
            " WHERE tenant_id = :id ORDER BY seq"
        ),
        {"id": tenant_id},
    )
    return [
        Transition(
            from_state=State(r.from_state) if r.from_state else None,
            to_state=State(r.to_state),
            reason=r.reason,
            at=r.at,
        )
        for r in rows
    ]


# -- tenant schemas ----------------------------------------------------------------------------


async def stamped_version(session: AsyncSession, schema: str) -> tuple[bool, str | None]:
    """Whether the schema exists, and the revision stamped in it (None if unstamped)."""
    ident = quote_ident(schema)
    row = (
        await session.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :s),"
                " to_regclass(:table) IS NOT NULL"
            ),
            {"s": schema, "table": f"{ident}.alembic_version"},
        )
    ).one()
    if not row[1]:
        return bool(row[0]), None
    version = await session.execute(text(f"SELECT version_num FROM {ident}.alembic_version"))  # noqa: S608 - quoted identifier
    return True, version.scalar_one_or_none()


async def create_schema(session: AsyncSession, schema: str, head: str) -> str:
    """Create the schema from the head model and stamp the head; returns the stamped version.

    All in the caller's transaction, so a schema is either complete and stamped or absent:
    a stamped schema is left as it is (idempotent retry)."""
    exists, version = await stamped_version(session, schema)
    if version is not None:
        return version
    ident = quote_ident(schema)
    await session.execute(text(f"CREATE SCHEMA IF NOT EXISTS {ident}"))
    await session.execute(text(f"SET LOCAL search_path TO {ident}"))
    # A schema that exists unstamped was not made by us in one transaction: create what is missing.
    await session.run_sync(lambda s: TENANT_METADATA.create_all(s.connection(), checkfirst=exists))
    await session.execute(
        text(
            "CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL,"
            " CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
    )
    await session.execute(
        text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head}
    )
    return head


async def drop_schema(session: AsyncSession, schema: str) -> None:
    try:
        ident = quote_ident(schema)
    except ValueError:
        # Not a name we could ever have created (a slug from before ADR 0136): nothing to drop.
        return
    await session.execute(text(f"DROP SCHEMA IF EXISTS {ident} CASCADE"))


async def schema_exists(session: AsyncSession, schema: str) -> bool:
    found = await session.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
    )
    return found.first() is not None


async def tenant_schemas(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' ORDER BY nspname")
    )
    return [r.nspname for r in rows]


async def fleet(session: AsyncSession, states: Sequence[State]) -> list[Tenant]:
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM platform.tenants WHERE state = ANY(:states)"  # noqa: S608 - constant column list
            " ORDER BY created_at, slug"
        ),
        {"states": list(states)},
    )
    return [_tenant(r) for r in rows]


async def count_by_state(session: AsyncSession) -> dict[State, int]:
    rows = await session.execute(
        text("SELECT state, count(*) AS n FROM platform.tenants GROUP BY state")
    )
    return {State(r.state): int(r.n) for r in rows}


# -- inside a tenant schema (the session's search path is the tenant's) ------------------------


async def get_setting(session: AsyncSession, key: str) -> Setting | None:
    row = (
        await session.execute(
            text("SELECT key, value, updated_at FROM settings WHERE key = :k"), {"k": key}
        )
    ).one_or_none()
    return Setting(key=row.key, value=row.value, updated_at=row.updated_at) if row else None


async def list_settings(session: AsyncSession) -> list[Setting]:
    rows = await session.execute(
        text("SELECT key, value, updated_at FROM settings ORDER BY key LIMIT 1000")
    )
    return [Setting(key=r.key, value=r.value, updated_at=r.updated_at) for r in rows]


async def put_setting(session: AsyncSession, key: str, value: Any) -> Setting:
    row = (
        await session.execute(
            text(
                "INSERT INTO settings (key, value, updated_at) VALUES (:k, CAST(:v AS jsonb), :now)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
                " updated_at = EXCLUDED.updated_at RETURNING key, value, updated_at"
            ),
            {"k": key, "v": json.dumps(value), "now": _now()},
        )
    ).one()
    return Setting(key=row.key, value=row.value, updated_at=row.updated_at)


async def delete_setting(session: AsyncSession, key: str) -> bool:
    result = await session.execute(
        text("DELETE FROM settings WHERE key = :k RETURNING key"), {"k": key}
    )
    return result.first() is not None


async def lock_schema_migration(conn: AsyncConnection, schema: str) -> None:
    """Two migrators never work on the same schema at once; the second finds it done."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('plexica.migrate.' || :s))"), {"s": schema}
    )


def _saga_key(tenant_id: UUID) -> str:
    return f"plexica.tenant.saga.{tenant_id}"


async def try_saga_lock(conn: AsyncConnection, tenant_id: UUID) -> bool:
    """A session lock held while a saga runs for the tenant; the server frees it if we die."""
    got = await conn.execute(
        text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": _saga_key(tenant_id)}
    )
    return bool(got.scalar_one())


async def saga_unlock(conn: AsyncConnection, tenant_id: UUID) -> None:
    await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": _saga_key(tenant_id)})
