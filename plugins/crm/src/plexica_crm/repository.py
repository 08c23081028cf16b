"""SQL of the CRM: the plugin's own tables in the caller's tenant schema (``crm_*``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.db import page as _page


def _like(q: str) -> str:
    return "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_companies(
    session: AsyncSession, q: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = "WHERE lower(name) LIKE :q" if q else ""
    sql = f"SELECT * FROM crm_companies {where} ORDER BY lower(name), id"  # noqa: S608
    return await _page(session, sql, {"q": _like(q or "")}, limit, offset)


async def insert_company(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO crm_companies (name, domain, created_by) VALUES (:name, :domain, :by)"
            " RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


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
    suffix = " FOR UPDATE" if lock else " FOR KEY SHARE" if key_share else ""
    sql = f"SELECT * FROM {table} WHERE id = :id{suffix}"  # noqa: S608
    row = await session.execute(text(sql), {"id": id_})
    found = row.mappings().first()
    return dict(found) if found else None


async def update(
    session: AsyncSession, table: str, id_: UUID, values: dict[str, Any]
) -> dict[str, Any]:
    assert values
    assert set(values) <= set(EDITABLE[table])
    sets = ", ".join(f"{name} = :{name}" for name in values)
    if table == "crm_deals":
        sets += ", updated_at = now()"
    sql = f"UPDATE {table} SET {sets} WHERE id = :_id RETURNING *"  # noqa: S608
    row = await session.execute(text(sql), {**values, "_id": id_})
    return dict(row.mappings().one())


async def lock_deletes(session: AsyncSession) -> None:
    """Deletes in the caller's tenant one at a time, until the transaction ends: a contact's
    delete clears deals and activities that a parallel deal delete is clearing too, and in
    opposite orders the two would deadlock."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('crm.delete:' || current_schema(), 0))")
    )


async def delete(session: AsyncSession, table: str, id_: UUID) -> None:
    assert table in TABLES
    await session.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": id_})  # noqa: S608


async def delete_sole_activities(session: AsyncSession, link: str, id_: UUID) -> None:
    """The activities linked to this contact or deal and to nothing else (ADR 0222): the ones
    linked to both keep the other link when the delete clears this one."""
    other = {"contact_id": "deal_id", "deal_id": "contact_id"}[link]
    await session.execute(
        text(f"DELETE FROM crm_activities WHERE {link} = :id AND {other} IS NULL"),  # noqa: S608
        {"id": id_},
    )


async def list_contacts(
    session: AsyncSession, q: str | None, company_id: UUID | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses, params = [], {"q": _like(q or ""), "company": company_id}
    if q:
        clauses.append("search LIKE :q")
    if company_id:
        clauses.append("company_id = :company")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT * FROM crm_contacts {where} ORDER BY lower(last_name), lower(first_name), id"  # noqa: S608
    return await _page(session, sql, params, limit, offset)


async def insert_contact(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO crm_contacts (first_name, last_name, email, phone, company_id, created_by)"
            " VALUES (:first_name, :last_name, :email, :phone, :company_id, :by) RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def list_stages(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(text("SELECT * FROM crm_stages ORDER BY position"))
    return [dict(r) for r in rows.mappings()]


async def get_stage(session: AsyncSession, stage_id: str) -> dict[str, Any] | None:
    row = await session.execute(text("SELECT * FROM crm_stages WHERE id = :id"), {"id": stage_id})
    found = row.mappings().first()
    return dict(found) if found else None


async def list_deals(
    session: AsyncSession, q: str | None, stage_id: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses, params = [], {"q": _like(q or ""), "stage": stage_id}
    if q:
        clauses.append("lower(title) LIKE :q")
    if stage_id:
        clauses.append("stage_id = :stage")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT * FROM crm_deals {where} ORDER BY updated_at DESC, id"  # noqa: S608
    return await _page(session, sql, params, limit, offset)


async def insert_deal(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO crm_deals (title, amount, currency, stage_id, company_id, contact_id,"
            " created_by) VALUES (:title, :amount, :currency, :stage_id, :company_id,"
            " :contact_id, :by) RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def move_deal(
    session: AsyncSession, deal_id: UUID, stage_id: str, closed: bool
) -> dict[str, Any]:
    row = await session.execute(
        text(
            "UPDATE crm_deals SET stage_id = :stage, updated_at = now(),"
            " closed_at = CASE WHEN :closed THEN now() ELSE NULL END WHERE id = :id RETURNING *"
        ),
        {"stage": stage_id, "closed": closed, "id": deal_id},
    )
    return dict(row.mappings().one())


async def pipeline(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT s.id, s.name, count(d.id) AS deals, coalesce(sum(d.amount), 0) AS amount"
            " FROM crm_stages s LEFT JOIN crm_deals d ON d.stage_id = s.id"
            " GROUP BY s.id, s.name, s.position ORDER BY s.position"
        )
    )
    return [dict(r) for r in rows.mappings()]


async def list_activities(
    session: AsyncSession, contact_id: UUID | None, deal_id: UUID | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses, params = [], {"contact": contact_id, "deal": deal_id}
    if contact_id:
        clauses.append("contact_id = :contact")
    if deal_id:
        clauses.append("deal_id = :deal")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT * FROM crm_activities {where} ORDER BY created_at DESC, id"  # noqa: S608
    return await _page(session, sql, params, limit, offset)


async def list_company_activities(
    session: AsyncSession, company_id: UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The activities of a company's contacts and deals (an activity has no company of its
    own)."""
    sql = (
        "SELECT * FROM crm_activities"
        " WHERE contact_id IN (SELECT id FROM crm_contacts WHERE company_id = :company)"
        " OR deal_id IN (SELECT id FROM crm_deals WHERE company_id = :company)"
        " ORDER BY created_at DESC, id"
    )
    return await _page(session, sql, {"company": company_id}, limit, offset)


async def insert_activity(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO crm_activities (kind, subject, body, due_at, contact_id, deal_id,"
            " created_by) VALUES (:kind, :subject, :body, :due_at, :contact_id, :deal_id, :by)"
            " RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def complete_activity(session: AsyncSession, activity_id: UUID) -> dict[str, Any] | None:
    row = await session.execute(
        text("UPDATE crm_activities SET done = true WHERE id = :id RETURNING *"),
        {"id": activity_id},
    )
    found = row.mappings().first()
    return dict(found) if found else None


# --- CSV import and export (ADR 0226) ------------------------------------------------------------

EXPORT_BATCH = 1000


async def _stream(session: AsyncSession, sql: str) -> AsyncIterator[list[dict[str, Any]]]:
    # One query, one snapshot, read through a cursor a batch at a time.
    result = await session.stream(text(sql))
    async for part in result.mappings().partitions(EXPORT_BATCH):
        yield [dict(r) for r in part]


def each_company(session: AsyncSession) -> AsyncIterator[list[dict[str, Any]]]:
    return _stream(session, "SELECT * FROM crm_companies ORDER BY id")


def each_contact(session: AsyncSession) -> AsyncIterator[list[dict[str, Any]]]:
    return _stream(
        session,
        "SELECT c.*, co.name AS company FROM crm_contacts c"
        " LEFT JOIN crm_companies co ON co.id = c.company_id ORDER BY c.id",
    )


async def companies_with_ids(session: AsyncSession, ids: Collection[UUID]) -> set[UUID]:
    """Those of ``ids`` that exist, key-share locked until the transaction ends (as a create's
    reference is: a parallel delete waits)."""
    rows = await session.execute(
        text("SELECT id FROM crm_companies WHERE id = ANY(:ids) FOR KEY SHARE"), {"ids": list(ids)}
    )
    return {r[0] for r in rows}


async def companies_named(session: AsyncSession, names: Collection[str]) -> dict[str, list[UUID]]:
    """The companies whose lower-cased name is one of ``names``, by that name, key-share
    locked."""
    rows = await session.execute(
        text(
            "SELECT lower(name), id FROM crm_companies WHERE lower(name) = ANY(:names)"
            " ORDER BY id FOR KEY SHARE"
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
