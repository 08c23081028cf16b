"""The outbox: events written in the caller's transaction, leased and stamped by a relay, and
marked published; in embedded mode moved to the delivery queue in one statement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.schemas import CloudEvent


async def insert_outbox(session: AsyncSession, event: CloudEvent) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.outbox (id, tenant_id, type, source, subject, time, data,"
            " traceparent, dataschema) VALUES (:id, :tenant_id, :type, :source, :subject,"
            " :time, CAST(:data AS jsonb), :traceparent, :dataschema)"
        ),
        {
            "id": event.id,
            "tenant_id": event.tenantid,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "time": event.time,
            "data": json.dumps(event.data, default=str),
            "traceparent": event.traceparent,
            "dataschema": event.dataschema,
        },
    )


OUTBOX_COLUMNS = "seq, id, tenant_id, type, source, subject, time, data, traceparent, dataschema"
_RETURNING = ", ".join("o." + c for c in OUTBOX_COLUMNS.split(", "))
# The stored form of an event on the delivery queue and in dead letters: the SDK's Event,
# its dataschema made absolute with the core API's base URL (``:schema_base``).
EVENT_JSON = (
    "jsonb_build_object('id', o.id, 'source', o.source, 'type', o.type, 'specversion', '1.0',"
    " 'time', o.time, 'subject', o.subject, 'datacontenttype', 'application/json',"
    " 'dataschema', CAST(:schema_base AS text) || o.dataschema,"
    " 'tenant_id', o.tenant_id, 'traceparent', o.traceparent, 'data', o.data)"
)


async def relaxed_commit(session: AsyncSession) -> None:
    """Commit this transaction without waiting for the WAL flush.

    Only for relay and delivery bookkeeping: losing such a commit in a crash makes an event
    go out twice, never lost, and consumers dedupe on the event id."""
    await session.execute(text("SET LOCAL synchronous_commit = off"))


# Lease the oldest pending rows no other relay holds and stamp their ``time`` (ADR 0183): the
# greater of its own and the last time stamped for its key (the tenant), the running maximum
# in seq order within the batch, so that in delivery order a key's time never goes back. Clock
# rows are locked and inserted in key order: two relays never wait on each other in a cycle.
_CLAIM = (
    "c AS (SELECT o.seq, coalesce(o.tenant_id, CAST(:nil AS uuid)) AS k, o.time"
    " FROM platform.outbox o WHERE o.published_at IS NULL"
    " AND (o.lease_until IS NULL OR o.lease_until < now())"
    " ORDER BY o.seq LIMIT :n FOR UPDATE SKIP LOCKED),"
    " clocks AS (SELECT key, time FROM platform.outbox_clocks"
    " WHERE key IN (SELECT k FROM c) ORDER BY key FOR UPDATE),"
    " stamped AS (SELECT c.seq, c.k,"
    " greatest(max(c.time) OVER (PARTITION BY c.k ORDER BY c.seq), clocks.time) AS t"
    " FROM c LEFT JOIN clocks ON clocks.key = c.k),"
    " clocked AS (INSERT INTO platform.outbox_clocks (key, time)"
    " SELECT k, max(t) FROM stamped GROUP BY k ORDER BY k ON CONFLICT (key)"
    " DO UPDATE SET time = greatest(platform.outbox_clocks.time, excluded.time))"
)
_NIL = "00000000-0000-0000-0000-000000000000"


async def claim_outbox(session: AsyncSession, limit: int, lease_seconds: float) -> list[Row[Any]]:
    """Lease up to ``limit`` pending rows no other relay holds (oldest first), time stamped."""
    await relaxed_commit(session)
    result = await session.execute(
        text(
            f"WITH {_CLAIM} UPDATE platform.outbox o"  # noqa: S608
            " SET lease_until = now() + make_interval(secs => :lease),"
            " attempts = o.attempts + 1, time = s.t"
            f" FROM stamped s WHERE o.seq = s.seq RETURNING {_RETURNING}"
        ),
        {"n": limit, "lease": lease_seconds, "nil": _NIL},
    )
    return sorted(result.all(), key=lambda r: int(r.seq))


async def mark_published(session: AsyncSession, seqs: Sequence[int]) -> None:
    await relaxed_commit(session)
    await session.execute(
        text(
            "UPDATE platform.outbox SET published_at = now(), lease_until = NULL"
            " WHERE seq = ANY(:seqs)"
        ),
        {"seqs": list(seqs)},
    )


async def release_outbox(session: AsyncSession, seqs: Sequence[int]) -> None:
    await session.execute(
        text(
            "UPDATE platform.outbox SET lease_until = NULL"
            " WHERE seq = ANY(:seqs) AND published_at IS NULL"
        ),
        {"seqs": list(seqs)},
    )


async def outbox_lag(session: AsyncSession) -> tuple[int, float]:
    """Pending rows and the age in seconds of the oldest one."""
    row = (
        await session.execute(
            text(
                "SELECT count(*) AS n,"
                " coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age"
                " FROM platform.outbox WHERE published_at IS NULL"
            )
        )
    ).one()
    return int(row.n), float(row.age)


async def purge_tenant(session: AsyncSession, tenant_id: UUID) -> int:
    outbox = await session.execute(
        text("DELETE FROM platform.outbox WHERE tenant_id = :t AND published_at IS NULL"),
        {"t": tenant_id},
    )
    queued = await session.execute(
        text("DELETE FROM platform.event_deliveries WHERE tenant_id = :t"), {"t": tenant_id}
    )
    await session.execute(
        text("DELETE FROM platform.event_consumers WHERE tenant_id = :t"), {"t": tenant_id}
    )
    await session.execute(
        text("DELETE FROM platform.outbox_clocks WHERE key = :t"), {"t": tenant_id}
    )
    return rowcount(outbox) + rowcount(queued)


def rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def plugin_event_schema(
    session: AsyncSession, event_type: str, version: int
) -> dict[str, Any] | None:
    """The data schema the newest catalog version of the type's plugin declares for it at
    ``version`` (the plugin id is the type's first segment: its publish function says so)."""
    result = await session.execute(
        text(
            "SELECT e->'data_schema' FROM platform.plugin_versions v"
            " CROSS JOIN LATERAL jsonb_array_elements("
            "  coalesce(v.manifest->'events'->'emits', '[]')) e"
            " WHERE v.plugin_id = split_part(:type, '.', 1) AND e->>'type' = :type"
            " AND coalesce(CAST(e->>'schema_version' AS int), 1) = :version"
            " AND jsonb_typeof(e->'data_schema') = 'object'"
            " ORDER BY v.registered_at DESC LIMIT 1"
        ),
        {"type": event_type, "version": version},
    )
    found = result.scalar_one_or_none()
    return dict(found) if found is not None else None


async def move_to_queue(session: AsyncSession, limit: int, schema_base: str) -> int:
    """Embedded relay: lease up to ``limit`` pending outbox rows, stamp their time, queue them
    for every plugin subscribed and active for the row's tenant, and mark them published, in
    one statement.

    Bookkeeping only (relaxed commit): a commit lost in a crash leaves the rows pending and
    unqueued together, and they move again."""
    await relaxed_commit(session)
    result = await session.execute(
        text(
            f"WITH {_CLAIM}, moved AS (UPDATE platform.outbox o"  # noqa: S608
            " SET published_at = now(), lease_until = NULL, attempts = o.attempts + 1,"
            " time = s.t FROM stamped s"
            f" WHERE o.seq = s.seq RETURNING {_RETURNING}),"
            " queued AS (INSERT INTO platform.event_deliveries"
            " (plugin_id, event_id, tenant_id, event, reason)"
            f" SELECT s.plugin_id, o.id, o.tenant_id, {EVENT_JSON}, 'live' FROM moved o"
            " JOIN platform.event_subscriptions s ON s.event_type = o.type"
            " JOIN platform.event_consumers c ON c.plugin_id = s.plugin_id"
            "  AND c.tenant_id = o.tenant_id AND c.active"
            " ORDER BY o.seq)"
            " SELECT count(*) FROM moved"
        ),
        {"n": limit, "nil": _NIL, "schema_base": schema_base},
    )
    return int(result.scalar_one())


async def count_by_tenant(session: AsyncSession, seconds: int) -> dict[UUID, int]:
    rows = await session.execute(
        text(
            "SELECT tenant_id, count(*) AS n FROM platform.outbox WHERE tenant_id IS NOT NULL"
            " AND created_at > now() - make_interval(secs => :s) GROUP BY tenant_id"
        ),
        {"s": seconds},
    )
    return {r.tenant_id: int(r.n) for r in rows}
