"""SQL of Billing: the plugin's own tables in the caller's tenant schema (``billing_*``).

This module holds what every part reads (a row by id, a guarded update, the tenant of an
event, the processed events), customers, plans and the dashboard's totals; subscriptions
and usage are in ``subscription_repository``, invoices, payments and credit notes in
``invoice_repository``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.db import fetch_first, fetch_one
from plexica_sdk.db import page as _page
from plexica_sdk.events import Event
from plexica_sdk.events import first_delivery as sdk_first_delivery

TABLES = (
    "billing_customers",
    "billing_plans",
    "billing_subscriptions",
    "billing_invoices",
    "billing_credit_notes",
)


def where_status_and_customer(status: str | None, customer_id: UUID | None) -> str:
    """The WHERE clause of a list by ``:status`` and ``:customer``, each only when given."""
    clauses = []
    if status:
        clauses.append("status = :status")
    if customer_id:
        clauses.append("customer_id = :customer")
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


LOCKS = {
    "update": " FOR UPDATE",
    "no key update": " FOR NO KEY UPDATE",
    "key share": " FOR KEY SHARE",
}


async def get(
    session: AsyncSession, table: str, id_: UUID, *, lock: bool | str = False
) -> dict[str, Any] | None:
    """The row; ``lock`` True ("update") holds it for a change or its removal, "no key update"
    for a change that lets other transactions still reference it, "key share" keeps it from
    being removed while this transaction references it."""
    assert table in TABLES
    mode = LOCKS["update" if lock is True else lock] if lock else ""
    sql = f"SELECT * FROM {table} WHERE id = :id{mode}"  # noqa: S608
    return await fetch_first(session, sql, {"id": id_})


def _unique_violation(exc: IntegrityError) -> bool:
    seen: BaseException | None = exc.orig
    while seen is not None:
        if getattr(seen, "sqlstate", None) == "23505":
            return True
        seen = seen.__cause__
    return False


async def update(
    session: AsyncSession, table: str, id_: UUID, values: dict[str, Any]
) -> dict[str, Any] | None:
    """Set ``values`` (column names from the service's models) on the row, in a savepoint: a
    unique column taken by another row (even one not committed yet) is None and the
    transaction goes on."""
    assert table in TABLES
    assert values
    assert all(k.isidentifier() for k in values)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    sql = f"UPDATE {table} SET {sets}, updated_at = now() WHERE id = :id RETURNING *"  # noqa: S608
    try:
        async with session.begin_nested():
            return await fetch_one(session, sql, {**values, "id": id_})
    except IntegrityError as exc:
        if _unique_violation(exc):
            return None
        raise


async def tenant_schema_of(session: AsyncSession, role: str, function: str) -> str | None:
    """The schema where the platform gave ``role`` its installation function: the tenant's
    schema, found from the catalog (events carry the tenant id, not its slug)."""
    row = await session.execute(
        text(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.proname = :fn AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role)"
            " AND has_function_privilege(:role, p.oid, 'EXECUTE')"
        ),
        {"fn": function, "role": role},
    )
    found = row.scalar_one_or_none()
    return str(found) if found else None


async def first_delivery(session: AsyncSession, event: Event, consumer: str) -> bool:
    return await sdk_first_delivery(session, event, consumer, table="billing_processed_events")


# --- customers -------------------------------------------------------------------------------


async def list_customers(
    session: AsyncSession, q: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = "WHERE strpos(lower(name), :q) > 0" if q else ""
    sql = f"SELECT * FROM billing_customers {where} ORDER BY lower(name), id"  # noqa: S608
    return await _page(session, sql, {"q": (q or "").lower()}, limit, offset)


async def insert_customer(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO billing_customers (name, email, currency, crm_company_id)"
        " VALUES (:name, :email, :currency, :crm_company_id) RETURNING *",
        values,
    )


async def upsert_crm_customer(
    session: AsyncSession, company_id: UUID, name: str, currency: str
) -> dict[str, Any]:
    """The customer of a CRM company, created on first sight (races resolved by the unique
    company id)."""
    return await fetch_one(
        session,
        "INSERT INTO billing_customers (name, currency, crm_company_id)"
        " VALUES (:name, :currency, :company) ON CONFLICT (crm_company_id)"
        " DO UPDATE SET name = EXCLUDED.name, updated_at = now() RETURNING *",
        {"name": name, "currency": currency, "company": company_id},
    )


async def customer_use(session: AsyncSession, customer_id: UUID) -> dict[str, int]:
    """How many invoices and live (not canceled) subscriptions the customer has."""
    row = await session.execute(
        text(
            "SELECT (SELECT count(*) FROM billing_invoices WHERE customer_id = :id) AS invoices,"
            " (SELECT count(*) FROM billing_subscriptions WHERE customer_id = :id"
            "  AND status <> 'canceled') AS subscriptions"
        ),
        {"id": customer_id},
    )
    return {k: int(v) for k, v in row.mappings().one().items()}


async def delete_customer(session: AsyncSession, customer_id: UUID) -> None:
    """The customer and its canceled subscriptions, whose items and usage were never billed
    (the caller checked: no invoices, nothing live)."""
    subs = "SELECT id FROM billing_subscriptions WHERE customer_id = :id"
    for sql in (
        f"DELETE FROM billing_subscription_items WHERE subscription_id IN ({subs})",  # noqa: S608
        f"DELETE FROM billing_usage_records WHERE subscription_id IN ({subs})",  # noqa: S608
        "DELETE FROM billing_subscriptions WHERE customer_id = :id",
        "DELETE FROM billing_customers WHERE id = :id",
    ):
        await session.execute(text(sql), {"id": customer_id})


# --- plans -----------------------------------------------------------------------------------


async def list_plans(
    session: AsyncSession, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return await _page(session, "SELECT * FROM billing_plans ORDER BY code", {}, limit, offset)


async def insert_plan(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        "INSERT INTO billing_plans (code, name, pricing, billing_interval, price, currency,"
        " tax_rate) VALUES (:code, :name, :pricing, :billing_interval, :price, :currency,"
        " :tax_rate) ON CONFLICT (code) DO NOTHING RETURNING *",
        values,
    )


async def plan_subscriptions(session: AsyncSession, plan_id: UUID) -> int:
    """Subscriptions of any status on the plan, now or for their current period."""
    row = await session.execute(
        text(
            "SELECT count(*) FROM billing_subscriptions WHERE plan_id = :id OR period_plan_id = :id"
        ),
        {"id": plan_id},
    )
    return int(row.scalar_one())


async def pin_period_price(session: AsyncSession, plan_id: UUID, price: Decimal) -> None:
    """Before the plan's price changes: billed subscriptions whose current period bills this
    plan and has begun (UTC) keep ``price`` (the old one) for that period."""
    await session.execute(
        text(
            "UPDATE billing_subscriptions SET period_price = :price, updated_at = now()"
            " WHERE coalesce(period_plan_id, plan_id) = :id AND period_price IS NULL"
            " AND status IN ('active', 'past_due')"
            " AND current_period_start <= (now() AT TIME ZONE 'UTC')::date"
        ),
        {"id": plan_id, "price": price},
    )


async def delete_plan(session: AsyncSession, plan_id: UUID) -> None:
    await session.execute(text("DELETE FROM billing_plans WHERE id = :id"), {"id": plan_id})


# --- dashboard -------------------------------------------------------------------------------


async def metrics(session: AsyncSession) -> dict[str, Any]:
    mrr = await session.execute(
        text(
            "SELECT p.currency, sum(p.price * s.quantity"
            " / CASE p.billing_interval WHEN 'year' THEN 12 ELSE 1 END) AS mrr"
            " FROM billing_subscriptions s JOIN billing_plans p ON p.id = s.plan_id"
            " WHERE s.status IN ('active', 'past_due') AND p.pricing <> 'usage'"
            " GROUP BY p.currency ORDER BY p.currency"
        )
    )
    open_ = await session.execute(
        text(
            "SELECT currency, count(*) AS n, sum(total - credited) AS amount FROM billing_invoices"
            " WHERE status = 'open' GROUP BY currency ORDER BY currency"
        )
    )
    return {"mrr": list(mrr.mappings()), "open": list(open_.mappings())}
