"""SQL of the CRM: the plugin's own tables in the caller's tenant schema (``crm_*``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.db import fetch_all, fetch_first, fetch_one
from plexica_sdk.db import page as _page


def _like(q: str) -> str:
    return "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --- the trash (ADR 0236) ------------------------------------------------------------------------
# A deleted company, contact or deal keeps its row (``deleted_at``) and the rows pointing at it
# keep their link, so that a restore brings back what was there. Every read below goes through
# ``COLUMNS`` and ``VISIBLE``: a record in the trash is not there, and a link to one reads as
# none, as a delete used to leave it. An activity whose links are all in the trash is not there
# either: a delete used to take it along (ADR 0222).


def _live(table: str, column: str) -> str:
    return f"(SELECT l.id FROM {table} l WHERE l.id = {column} AND l.deleted_at IS NULL)"  # noqa: S608


_COMPANY, _CONTACT, _DEAL = (
    _live("crm_companies", "t.company_id"),
    _live("crm_contacts", "t.contact_id"),
    _live("crm_deals", "t.deal_id"),
)
_TRASHED = "t.version, t.deleted_at, t.deleted_by"
COLUMNS = {
    "crm_companies": "t.*",
    "crm_contacts": "t.id, t.first_name, t.last_name, t.email, t.phone, t.created_at,"
    f" t.created_by, {_TRASHED}, {_COMPANY} AS company_id",
    "crm_deals": "t.id, t.title, t.amount, t.currency, t.stage_id, t.created_at, t.updated_at,"
    f" t.closed_at, t.created_by, {_TRASHED}, {_COMPANY} AS company_id,"
    f" {_CONTACT} AS contact_id",
    "crm_activities": "t.id, t.kind, t.subject, t.body, t.due_at, t.done, t.created_at,"
    f" t.created_by, {_CONTACT} AS contact_id, {_DEAL} AS deal_id",
}
VISIBLE = {
    "crm_companies": "t.deleted_at IS NULL",
    "crm_contacts": "t.deleted_at IS NULL",
    "crm_deals": "t.deleted_at IS NULL",
    "crm_activities": f"coalesce({_CONTACT}, {_DEAL}) IS NOT NULL",
}
TRASH = ("crm_companies", "crm_contacts", "crm_deals")
_KEPT = "t.deleted_at > now() - make_interval(days => :days)"
_EXPIRED = "deleted_at <= now() - make_interval(days => :days)"


def _select(table: str, where: str = "") -> str:
    return (
        f"SELECT {COLUMNS[table]} FROM {table} t WHERE {VISIBLE[table]}"  # noqa: S608
        + (f" AND {where}" if where else "")
    )


async def trash(session: AsyncSession, table: str, id_: UUID, by: str) -> None:
    assert table in TRASH
    await session.execute(
        text(f"UPDATE {table} SET deleted_at = now(), deleted_by = :by WHERE id = :id"),  # noqa: S608
        {"id": id_, "by": by},
    )


# The columns that link to a record of each table (activities have no version to change).
LINKS = {
    "crm_companies": (("crm_contacts", "company_id"), ("crm_deals", "company_id")),
    "crm_contacts": (("crm_deals", "contact_id"),),
    "crm_deals": (),
}


async def touch_links(session: AsyncSession, table: str, id_: UUID) -> None:
    """A new version of the records that link to this one, their link itself unchanged: what
    they read as changes when it goes to the trash or comes back, and so does their ETag."""
    for other, column in LINKS[table]:
        await session.execute(
            text(f"UPDATE {other} SET {column} = {column} WHERE {column} = :id"),  # noqa: S608
            {"id": id_},
        )


async def list_trash(
    session: AsyncSession, table: str, days: int, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The records of ``table`` deleted in the last ``days`` days, the latest first."""
    assert table in TRASH
    sql = f"SELECT {COLUMNS[table]} FROM {table} t WHERE {_KEPT} ORDER BY t.deleted_at DESC, t.id"  # noqa: S608
    return await _page(session, sql, {"days": days}, limit, offset)


async def restore(session: AsyncSession, table: str, id_: UUID, days: int) -> dict[str, Any] | None:
    """The record out of the trash, if it was put there in the last ``days`` days."""
    assert table in TRASH
    return await fetch_first(
        session,
        f"UPDATE {table} t SET deleted_at = NULL, deleted_by = NULL"  # noqa: S608
        f" WHERE t.id = :id AND {_KEPT} RETURNING {COLUMNS[table]}",
        {"id": id_, "days": days},
    )


async def purge(session: AsyncSession, days: int) -> None:
    """The records deleted ``days`` days ago or more, for good, as a delete did before the
    trash: first the activities linked to them alone (ADR 0222), then the records; the
    database clears the links to them (ON DELETE SET NULL)."""
    params = {"days": days}
    await session.execute(
        text(
            "DELETE FROM crm_activities WHERE"  # noqa: S608
            f" (contact_id IS NULL OR contact_id IN (SELECT id FROM crm_contacts WHERE {_EXPIRED}))"
            f" AND (deal_id IS NULL OR deal_id IN (SELECT id FROM crm_deals WHERE {_EXPIRED}))"
        ),
        params,
    )
    for table in ("crm_deals", "crm_contacts", "crm_companies"):
        await session.execute(text(f"DELETE FROM {table} WHERE {_EXPIRED}"), params)  # noqa: S608


async def list_companies(
    session: AsyncSession, q: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = "lower(t.name) LIKE :q" if q else ""
    sql = _select("crm_companies", where) + " ORDER BY lower(t.name), t.id"
    return await _page(session, sql, {"q": _like(q or "")}, limit, offset)


async def insert_company(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO crm_companies (name, domain, created_by) VALUES (:name, :domain, :by)"
        " RETURNING *",
        values,
    )


TABLES = ("crm_companies", "crm_contacts", "crm_deals", "crm_activities")
# What PATCH may set, per table; never the deal's stage (moves have their own route).
EDITABLE = {
    "crm_companies": ("name", "domain"),
    "crm_contacts": ("first_name", "last_name", "email", "phone", "company_id"),
    "crm_deals": ("title", "amount", "currency", "company_id", "contact_id"),
}


async def get(
    session: AsyncSession, table: str, id_: UUID, *, lock: bool = False, key_share: bool = False
) -> dict[str, Any] | None:
    """``lock``: the row's write lock, for a read-modify-write or a delete. ``key_share``: held
    by a row that is about to point at this one, so a parallel delete waits for it (or it finds
    the row gone) instead of the insert failing on the foreign key."""
    assert table in TABLES
    suffix = " FOR UPDATE OF t" if lock else " FOR KEY SHARE OF t" if key_share else ""
    sql = _select(table, "t.id = :id") + suffix
    return await fetch_first(session, sql, {"id": id_})


async def update(
    session: AsyncSession, table: str, id_: UUID, values: dict[str, Any]
) -> dict[str, Any]:
    assert values
    assert set(values) <= set(EDITABLE[table])
    sets = ", ".join(f"{name} = :{name}" for name in values)
    if table == "crm_deals":
        sets += ", updated_at = now()"
    sql = f"UPDATE {table} t SET {sets} WHERE t.id = :_id RETURNING {COLUMNS[table]}"  # noqa: S608
    return await fetch_one(session, sql, {**values, "_id": id_})


async def lock_deletes(session: AsyncSession) -> None:
    """Deletes, restores and purges in the caller's tenant one at a time, until the transaction
    ends: a purge clears deals and activities that a parallel one is clearing too, and in
    opposite orders the two would deadlock; a restore waits for a purge that would take its
    record's activities."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('crm.delete:' || current_schema(), 0))")
    )


async def list_contacts(
    session: AsyncSession, q: str | None, company_id: UUID | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses, params = [], {"q": _like(q or ""), "company": company_id}
    if q:
        clauses.append("t.search LIKE :q")
    if company_id:
        clauses.append(f"t.company_id = :company AND {_COMPANY} IS NOT NULL")
    sql = _select("crm_contacts", " AND ".join(clauses))
    sql += " ORDER BY lower(t.last_name), lower(t.first_name), t.id"
    return await _page(session, sql, params, limit, offset)


async def insert_contact(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO crm_contacts (first_name, last_name, email, phone, company_id, created_by)"
        " VALUES (:first_name, :last_name, :email, :phone, :company_id, :by) RETURNING *",
        values,
    )


async def list_stages(session: AsyncSession) -> list[dict[str, Any]]:
    return await fetch_all(session, "SELECT * FROM crm_stages ORDER BY position")


async def get_stage(session: AsyncSession, stage_id: str) -> dict[str, Any] | None:
    return await fetch_first(session, "SELECT * FROM crm_stages WHERE id = :id", {"id": stage_id})


async def list_deals(
    session: AsyncSession, q: str | None, stage_id: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses, params = [], {"q": _like(q or ""), "stage": stage_id}
    if q:
        clauses.append("lower(t.title) LIKE :q")
    if stage_id:
        clauses.append("t.stage_id = :stage")
    sql = _select("crm_deals", " AND ".join(clauses)) + " ORDER BY t.updated_at DESC, t.id"
    return await _page(session, sql, params, limit, offset)


async def insert_deal(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO crm_deals (title, amount, currency, stage_id, company_id, contact_id,"
        " created_by) VALUES (:title, :amount, :currency, :stage_id, :company_id,"
        " :contact_id, :by) RETURNING *",
        values,
    )


async def move_deal(
    session: AsyncSession, deal_id: UUID, stage_id: str, closed: bool
) -> dict[str, Any]:
    return await fetch_one(
        session,
        "UPDATE crm_deals t SET stage_id = :stage, updated_at = now(),"  # noqa: S608
        " closed_at = CASE WHEN :closed THEN now() ELSE NULL END WHERE t.id = :id"
        f" RETURNING {COLUMNS['crm_deals']}",
        {"stage": stage_id, "closed": closed, "id": deal_id},
    )


async def pipeline(session: AsyncSession) -> list[dict[str, Any]]:
    return await fetch_all(
        session,
        "SELECT s.id, s.name, count(d.id) AS deals, coalesce(sum(d.amount), 0) AS amount"
        " FROM crm_stages s LEFT JOIN crm_deals d"
        " ON d.stage_id = s.id AND d.deleted_at IS NULL"
        " GROUP BY s.id, s.name, s.position ORDER BY s.position",
    )


async def list_activities(
    session: AsyncSession, contact_id: UUID | None, deal_id: UUID | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses, params = [], {"contact": contact_id, "deal": deal_id}
    if contact_id:
        clauses.append(f"t.contact_id = :contact AND {_CONTACT} IS NOT NULL")
    if deal_id:
        clauses.append(f"t.deal_id = :deal AND {_DEAL} IS NOT NULL")
    sql = _select("crm_activities", " AND ".join(clauses)) + " ORDER BY t.created_at DESC, t.id"
    return await _page(session, sql, params, limit, offset)


async def list_company_activities(
    session: AsyncSession, company_id: UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The activities of a company's contacts and deals (an activity has no company of its
    own)."""
    live = "company_id = :company AND deleted_at IS NULL"
    sql = _select(
        "crm_activities",
        f"(t.contact_id IN (SELECT id FROM crm_contacts WHERE {live})"  # noqa: S608
        f" OR t.deal_id IN (SELECT id FROM crm_deals WHERE {live}))",
    )
    sql += " ORDER BY t.created_at DESC, t.id"
    return await _page(session, sql, {"company": company_id}, limit, offset)


async def insert_activity(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO crm_activities (kind, subject, body, due_at, contact_id, deal_id,"
        " created_by) VALUES (:kind, :subject, :body, :due_at, :contact_id, :deal_id, :by)"
        " RETURNING *",
        values,
    )


async def complete_activity(session: AsyncSession, activity_id: UUID) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        "UPDATE crm_activities t SET done = true"  # noqa: S608
        f" WHERE t.id = :id AND {VISIBLE['crm_activities']}"
        f" RETURNING {COLUMNS['crm_activities']}",
        {"id": activity_id},
    )


# --- CSV import and export (ADR 0226) ------------------------------------------------------------

EXPORT_BATCH = 1000


async def _stream(session: AsyncSession, sql: str) -> AsyncIterator[list[dict[str, Any]]]:
    # One query, one snapshot, read through a cursor a batch at a time.
    result = await session.stream(text(sql))
    async for part in result.mappings().partitions(EXPORT_BATCH):
        yield [dict(r) for r in part]


def each_company(session: AsyncSession) -> AsyncIterator[list[dict[str, Any]]]:
    return _stream(session, _select("crm_companies") + " ORDER BY t.id")


def each_contact(session: AsyncSession) -> AsyncIterator[list[dict[str, Any]]]:
    return _stream(
        session,
        f"SELECT {COLUMNS['crm_contacts']}, co.name AS company FROM crm_contacts t"  # noqa: S608
        " LEFT JOIN crm_companies co ON co.id = t.company_id AND co.deleted_at IS NULL"
        f" WHERE {VISIBLE['crm_contacts']} ORDER BY t.id",
    )


async def companies_with_ids(session: AsyncSession, ids: Collection[UUID]) -> set[UUID]:
    """Those of ``ids`` that exist, key-share locked until the transaction ends (as a create's
    reference is: a parallel delete waits)."""
    rows = await session.execute(
        text(
            "SELECT id FROM crm_companies WHERE id = ANY(:ids) AND deleted_at IS NULL FOR KEY SHARE"
        ),
        {"ids": list(ids)},
    )
    return {r[0] for r in rows}


async def companies_named(session: AsyncSession, names: Collection[str]) -> dict[str, list[UUID]]:
    """The companies whose lower-cased name is one of ``names``, by that name, key-share
    locked."""
    rows = await session.execute(
        text(
            "SELECT lower(name), id FROM crm_companies WHERE lower(name) = ANY(:names)"
            " AND deleted_at IS NULL ORDER BY id FOR KEY SHARE"
        ),
        {"names": list(names)},
    )
    found: dict[str, list[UUID]] = {}
    for name, id_ in rows:
        found.setdefault(name, []).append(id_)
    return found


async def insert_companies(
    session: AsyncSession, rows: list[dict[str, Any]], by: str
) -> list[dict[str, Any]]:
    """Many companies in one statement, returned in the order given."""
    if not rows:
        return []
    result = await session.execute(
        text(
            "INSERT INTO crm_companies (name, domain, created_by)"
            " SELECT name, domain, :by FROM unnest(CAST(:name AS text[]), CAST(:domain AS text[]))"
            " WITH ORDINALITY AS u(name, domain, n) ORDER BY n RETURNING *"
        ),
        {"by": by, "name": [r["name"] for r in rows], "domain": [r["domain"] for r in rows]},
    )
    # uuidv7 ids of one session increase (RETURNING itself promises no order).
    return sorted((dict(r) for r in result.mappings()), key=lambda r: r["id"])


async def insert_contacts(
    session: AsyncSession, rows: list[dict[str, Any]], by: str
) -> list[dict[str, Any]]:
    """Many contacts in one statement, returned in the order given."""
    if not rows:
        return []
    columns = ("first_name", "last_name", "email", "phone", "company_id")
    result = await session.execute(
        text(
            "INSERT INTO crm_contacts (first_name, last_name, email, phone, company_id, created_by)"
            " SELECT first_name, last_name, email, phone, company_id, :by FROM unnest("
            " CAST(:first_name AS text[]), CAST(:last_name AS text[]), CAST(:email AS text[]),"
            " CAST(:phone AS text[]), CAST(:company_id AS uuid[])) WITH ORDINALITY"
            " AS u(first_name, last_name, email, phone, company_id, n) ORDER BY n RETURNING *"
        ),
        {"by": by, **{c: [r[c] for r in rows] for c in columns}},
    )
    return sorted((dict(r) for r in result.mappings()), key=lambda r: r["id"])
