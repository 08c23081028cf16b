"""SQL of events (platform schema): outbox, subscriptions, delivery queue, dead letters.

Queries built with f-strings only splice the module's own constant column lists."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.schemas import CloudEvent
from plexica.kit.db import quote_ident


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
_EVENT_JSON = (
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


async def dead_letters_pending(session: AsyncSession) -> int:
    return int(
        (
            await session.execute(
                text("SELECT count(*) FROM platform.dead_letters WHERE status = 'pending'")
            )
        ).scalar_one()
    )


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
    return _rowcount(outbox) + _rowcount(queued)


def _rowcount(result: Any) -> int:
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


# Subscriptions: which plugin consumes which types, and where it is installed and active.


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


async def subscribed_types(session: AsyncSession, plugin_id: str) -> list[str]:
    result = await session.execute(
        text("SELECT event_type FROM platform.event_subscriptions WHERE plugin_id = :p"),
        {"p": plugin_id},
    )
    return sorted(result.scalars())


# The delivery queue: live events in embedded mode, retries, replays, dead-letter retries.


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
            f" SELECT s.plugin_id, o.id, o.tenant_id, {_EVENT_JSON}, 'live' FROM moved o"
            " JOIN platform.event_subscriptions s ON s.event_type = o.type"
            " JOIN platform.event_consumers c ON c.plugin_id = s.plugin_id"
            "  AND c.tenant_id = o.tenant_id AND c.active"
            " ORDER BY o.seq)"
            " SELECT count(*) FROM moved"
        ),
        {"n": limit, "nil": _NIL, "schema_base": schema_base},
    )
    return int(result.scalar_one())


async def enqueue_delivery(
    session: AsyncSession,
    plugin_id: str,
    event: dict[str, Any],
    *,
    reason: str,
    attempts: int = 0,
    delay_seconds: float = 0.0,
    error: str | None = None,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.event_deliveries"
            " (plugin_id, event_id, tenant_id, event, reason, attempts, last_error,"
            "  next_attempt_at)"
            " VALUES (:p, :e, :t, CAST(:ev AS jsonb), :r, :a, :err,"
            "  now() + make_interval(secs => :d))"
        ),
        {
            "p": plugin_id,
            "e": event["id"],
            "t": event.get("tenant_id"),
            "ev": json.dumps(event, default=str),
            "r": reason,
            "a": attempts,
            "err": error,
            "d": delay_seconds,
        },
    )


async def replay(
    session: AsyncSession,
    plugin_id: str,
    tenant_id: UUID,
    types: Sequence[str],
    schema_base: str,
) -> int:
    result = await session.execute(
        text(
            "INSERT INTO platform.event_deliveries (plugin_id, event_id, tenant_id, event, reason)"  # noqa: S608
            f" SELECT :p, o.id, o.tenant_id, {_EVENT_JSON}, 'replay' FROM platform.outbox o"
            " WHERE o.tenant_id = :t AND o.type = ANY(:types) AND o.published_at IS NOT NULL"
            " ORDER BY o.seq"
        ),
        {"p": plugin_id, "t": tenant_id, "types": list(types), "schema_base": schema_base},
    )
    return _rowcount(result)


async def claim_deliveries(
    session: AsyncSession, plugin_ids: Sequence[str], limit: int, lease_seconds: float
) -> list[Row[Any]]:
    await relaxed_commit(session)  # a lease lost in a crash only hands the rows out again
    result = await session.execute(
        text(
            "UPDATE platform.event_deliveries d"
            " SET lease_until = now() + make_interval(secs => :lease)"
            " FROM (SELECT seq FROM platform.event_deliveries"
            "  WHERE plugin_id = ANY(:plugins) AND next_attempt_at <= now()"
            "  AND (lease_until IS NULL OR lease_until < now())"
            "  ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED) c"
            " WHERE d.seq = c.seq"
            " RETURNING d.seq, d.plugin_id, d.event, d.reason, d.attempts"
        ),
        {"plugins": list(plugin_ids), "n": limit, "lease": lease_seconds},
    )
    return sorted(result.all(), key=lambda r: int(r.seq))


async def delete_delivery(session: AsyncSession, seq: int) -> None:
    await delete_deliveries(session, [seq])


async def delete_deliveries(session: AsyncSession, seqs: Sequence[int]) -> None:
    await relaxed_commit(session)
    await session.execute(
        text("DELETE FROM platform.event_deliveries WHERE seq = ANY(:s)"), {"s": list(seqs)}
    )


async def reschedule_delivery(
    session: AsyncSession, seq: int, attempts: int, delay_seconds: float, error: str
) -> None:
    await session.execute(
        text(
            "UPDATE platform.event_deliveries SET attempts = :a, last_error = :err,"
            " lease_until = NULL, next_attempt_at = now() + make_interval(secs => :d)"
            " WHERE seq = :s"
        ),
        {"s": seq, "a": attempts, "d": delay_seconds, "err": error},
    )


# Dead letters.

DEAD_LETTER_COLUMNS = (
    "id, plugin_id, event_id, tenant_id, type, event, error, attempts, status, created_at,"
    " resolved_at"
)


async def insert_dead_letter(  # noqa: PLR0917
    session: AsyncSession,
    dead_letter_id: UUID,
    plugin_id: str,
    event: dict[str, Any],
    error: str,
    attempts: int,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.dead_letters"
            " (id, plugin_id, event_id, tenant_id, type, event, error, attempts)"
            " VALUES (:id, :p, :e, :t, :type, CAST(:ev AS jsonb), :err, :a)"
        ),
        {
            "id": dead_letter_id,
            "p": plugin_id,
            "e": event["id"],
            "t": event.get("tenant_id"),
            "type": event["type"],
            "ev": json.dumps(event, default=str),
            "err": error,
            "a": attempts,
        },
    )


async def list_dead_letters(
    session: AsyncSession,
    *,
    plugin_id: str | None,
    tenant_id: UUID | None,
    status: str | None,
    limit: int,
) -> list[Row[Any]]:
    result = await session.execute(
        text(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM platform.dead_letters"  # noqa: S608
            " WHERE (CAST(:p AS text) IS NULL OR plugin_id = :p)"
            " AND (CAST(:t AS uuid) IS NULL OR tenant_id = :t)"
            " AND (CAST(:s AS text) IS NULL OR status = :s)"
            " ORDER BY created_at DESC, id LIMIT :n"
        ),
        {"p": plugin_id, "t": tenant_id, "s": status, "n": limit},
    )
    return list(result.all())


async def lock_dead_letter(session: AsyncSession, dead_letter_id: UUID) -> Row[Any] | None:
    result = await session.execute(
        text(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM platform.dead_letters"  # noqa: S608
            " WHERE id = :id FOR UPDATE"
        ),
        {"id": dead_letter_id},
    )
    return result.one_or_none()


async def resolve_dead_letter(session: AsyncSession, dead_letter_id: UUID, status: str) -> None:
    await session.execute(
        text("UPDATE platform.dead_letters SET status = :s, resolved_at = now() WHERE id = :id"),
        {"id": dead_letter_id, "s": status},
    )


# A plugin logged in as itself (ADR 0078): the functions of schema plugin_api, which act only
# on the rows of the plugin whose login opened the session.

PLUGIN_API_SCHEMA = "plugin_api"


async def grant_plugin_api(session: AsyncSession, login: str) -> None:
    """Let a plugin's login call the plugin_api functions (and nothing else in the platform)."""
    role = quote_ident(login)
    await session.execute(text(f"GRANT USAGE ON SCHEMA {PLUGIN_API_SCHEMA} TO {role}"))
    await session.execute(
        text(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {PLUGIN_API_SCHEMA} TO {role}")
    )


async def own_plugin_id(session: AsyncSession) -> str:
    return str((await session.execute(text("SELECT plugin_api.plugin_id()"))).scalar_one())


async def own_is_active(session: AsyncSession, tenant_id: UUID) -> bool:
    result = await session.execute(
        text("SELECT plugin_api.event_consumer_active(:t)"), {"t": tenant_id}
    )
    return bool(result.scalar_one())


async def own_claim_deliveries(
    session: AsyncSession, limit: int, lease_seconds: float
) -> list[Row[Any]]:
    await relaxed_commit(session)
    result = await session.execute(
        text(
            "SELECT seq, event, reason, attempts FROM plugin_api.event_claim_deliveries(:n, :lease)"
        ),
        {"n": limit, "lease": lease_seconds},
    )
    return sorted(result.all(), key=lambda r: int(r.seq))


async def own_delivered(session: AsyncSession, seqs: Sequence[int]) -> None:
    await relaxed_commit(session)
    await session.execute(
        text("SELECT plugin_api.event_delivered(s) FROM unnest(CAST(:s AS bigint[])) AS s"),
        {"s": list(seqs)},
    )


async def own_retry(  # noqa: PLR0917
    session: AsyncSession,
    event: dict[str, Any],
    attempts: int,
    delay_seconds: float,
    error: str,
    queued_seq: int | None,
) -> None:
    await session.execute(
        text("SELECT plugin_api.event_retry(CAST(:ev AS jsonb), :a, :d, :err, CAST(:q AS bigint))"),
        {
            "ev": json.dumps(event, default=str),
            "a": attempts,
            "d": delay_seconds,
            "err": error,
            "q": queued_seq,
        },
    )


async def own_dead_letter(
    session: AsyncSession,
    event: dict[str, Any],
    error: str,
    attempts: int,
    queued_seq: int | None,
) -> UUID:
    result = await session.execute(
        text(
            "SELECT plugin_api.event_dead_letter(CAST(:ev AS jsonb), :err, :a, CAST(:q AS bigint))"
        ),
        {"ev": json.dumps(event, default=str), "err": error, "a": attempts, "q": queued_seq},
    )
    return UUID(str(result.scalar_one()))


async def count_by_tenant(session: AsyncSession, seconds: int) -> dict[UUID, int]:
    rows = await session.execute(
        text(
            "SELECT tenant_id, count(*) AS n FROM platform.outbox WHERE tenant_id IS NOT NULL"
            " AND created_at > now() - make_interval(secs => :s) GROUP BY tenant_id"
        ),
        {"s": seconds},
    )
    return {r.tenant_id: int(r.n) for r in rows}
