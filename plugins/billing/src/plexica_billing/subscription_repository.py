"""SQL of Billing's subscriptions, their proration items and usage records, and the periods
the invoice run bills."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_billing.repository import where_status_and_customer
from plexica_sdk.db import execute_many, fetch_all, fetch_first, fetch_one
from plexica_sdk.db import page as _page

# --- subscriptions ---------------------------------------------------------------------------


async def list_subscriptions(
    session: AsyncSession, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = where_status_and_customer(status, customer_id)
    sql = f"SELECT * FROM billing_subscriptions {where} ORDER BY created_at DESC, id"  # noqa: S608
    return await _page(session, sql, {"status": status, "customer": customer_id}, limit, offset)


async def insert_subscription(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO billing_subscriptions (customer_id, plan_id, status, quantity, anchor,"
        " current_period_start, current_period_end) VALUES (:customer_id, :plan_id, :status,"
        " :quantity, :start, :start, :end) RETURNING *",
        values,
    )


async def update_subscription(
    session: AsyncSession,
    subscription_id: UUID,
    plan_id: UUID,
    quantity: int,
    status: str,
    *,
    cancel_at_period_end: bool,
    keep_period: bool = False,
) -> dict[str, Any]:
    """Set plan, seats, status and the cancellation at the period's end; with ``keep_period``
    the current period's base line keeps billing the plan and seats it started with (the change
    is prorated on top)."""
    return await fetch_one(
        session,
        "UPDATE billing_subscriptions SET plan_id = :plan, quantity = :quantity,"
        " status = :status, cancel_at_period_end = :ending, updated_at = now(),"
        " period_plan_id = CASE WHEN :keep THEN coalesce(period_plan_id, plan_id)"
        "  ELSE period_plan_id END,"
        " period_quantity = CASE WHEN :keep THEN coalesce(period_quantity, quantity)"
        "  ELSE period_quantity END,"
        # The pinned price belongs to the period's plan: gone when that plan is left unkept.
        " period_price = CASE WHEN :keep OR plan_id = :plan THEN period_price END,"
        " canceled_at = CASE WHEN :status = 'canceled' THEN now() ELSE NULL END"
        " WHERE id = :id RETURNING *",
        {
            "plan": plan_id,
            "quantity": quantity,
            "status": status,
            "ending": cancel_at_period_end,
            "id": subscription_id,
            "keep": keep_period,
        },
    )


async def subscription_plan(
    session: AsyncSession, subscription_id: UUID, *, lock: bool = True
) -> dict[str, Any] | None:
    """The subscription (locked unless ``lock`` is False) with its current plan's pricing: the
    price the period began with while the period bills that plan (ADR 0223)."""
    sql = (
        "SELECT s.*, p.pricing, p.currency, p.tax_rate, p.billing_interval,"
        " CASE WHEN coalesce(s.period_plan_id, s.plan_id) = s.plan_id"
        "  THEN coalesce(s.period_price, p.price) ELSE p.price END AS price,"
        " p.name AS plan_name"
        " FROM billing_subscriptions s JOIN billing_plans p ON p.id = s.plan_id"
        " WHERE s.id = :id"
    )
    if lock:
        sql += " FOR UPDATE OF s"
    return await fetch_first(session, sql, {"id": subscription_id})


async def insert_items(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    await execute_many(
        session,
        "INSERT INTO billing_subscription_items (subscription_id, description, amount,"
        " tax_rate) VALUES (:subscription_id, :description, :amount, :tax_rate)",
        values,
    )


async def pending_items(session: AsyncSession, subscription_id: UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        session,
        "SELECT * FROM billing_subscription_items WHERE subscription_id = :id"
        " AND invoice_id IS NULL ORDER BY created_at, id",
        {"id": subscription_id},
    )


async def unbilled_for(
    session: AsyncSession, subscription_ids: list[UUID]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For subscriptions the caller has locked: their pending proration items, and their
    unbilled usage that occurred before the end of their current period, per unit price and
    tax rate (with the ids of the records summed)."""
    items = await session.execute(
        text(
            "SELECT * FROM billing_subscription_items WHERE subscription_id = ANY(:ids)"
            " AND invoice_id IS NULL ORDER BY created_at, id"
        ),
        {"ids": subscription_ids},
    )
    usage = await session.execute(
        text(
            "SELECT u.subscription_id, u.unit_price, u.tax_rate, sum(u.quantity) AS quantity,"
            " array_agg(u.id) AS ids FROM billing_usage_records u"
            " JOIN billing_subscriptions s ON s.id = u.subscription_id"
            " WHERE u.subscription_id = ANY(:ids) AND u.invoice_id IS NULL"
            " AND u.occurred_at < (s.current_period_end::timestamp AT TIME ZONE 'UTC')"
            " GROUP BY u.subscription_id, u.unit_price, u.tax_rate"
            " ORDER BY u.unit_price DESC, u.tax_rate"
        ),
        {"ids": subscription_ids},
    )
    return [dict(r) for r in items.mappings()], [dict(r) for r in usage.mappings()]


async def mark_billed(
    session: AsyncSession, items: list[dict[str, Any]], usage: list[dict[str, Any]]
) -> None:
    """Attach billed items (``{id, invoice_id}``) and usage (``{ids, invoice_id}``) to their
    invoices: billed once, never again."""
    await execute_many(
        session,
        "UPDATE billing_subscription_items SET invoice_id = :invoice_id"
        " WHERE id = :id AND invoice_id IS NULL",
        items,
    )
    await execute_many(
        session,
        "UPDATE billing_usage_records SET invoice_id = :invoice_id"
        " WHERE id = ANY(:ids) AND invoice_id IS NULL",
        usage,
    )


# --- usage -----------------------------------------------------------------------------------


async def insert_usage(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any] | None:
    """The new record, or None when its idempotency key is already recorded."""
    return await fetch_first(
        session,
        "INSERT INTO billing_usage_records (subscription_id, idempotency_key, quantity,"
        " unit_price, tax_rate, occurred_at) VALUES (:subscription_id, :key, :quantity,"
        " :unit_price, :tax_rate, :occurred_at) ON CONFLICT (idempotency_key) DO NOTHING"
        " RETURNING *",
        values,
    )


async def usage_by_key(session: AsyncSession, key: str) -> dict[str, Any] | None:
    return await fetch_first(
        session, "SELECT * FROM billing_usage_records WHERE idempotency_key = :k", {"k": key}
    )


async def list_usage(
    session: AsyncSession, subscription_id: UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    sql = (
        "SELECT * FROM billing_usage_records WHERE subscription_id = :sub"
        " ORDER BY occurred_at DESC, id"
    )
    return await _page(session, sql, {"sub": subscription_id}, limit, offset)


# Canceled when the period ends, not when the run comes by (ADR 0237).
_CANCEL_AT_END = (
    "UPDATE billing_subscriptions SET status = 'canceled', updated_at = now(),"
    " canceled_at = current_period_end::timestamp AT TIME ZONE 'UTC'"
)


async def cancel_ended_trials(session: AsyncSession, as_of: date) -> list[dict[str, Any]]:
    """Trials over by ``as_of`` and to be canceled at their end: canceled, never billed."""
    return await fetch_all(
        session,
        f"{_CANCEL_AT_END} WHERE status = 'trialing' AND cancel_at_period_end"
        " AND current_period_end <= :as_of RETURNING *",
        {"as_of": as_of},
    )


async def cancel_at_period_end(
    session: AsyncSession, subscription_ids: list[UUID]
) -> list[dict[str, Any]]:
    """Subscriptions whose last period the caller has just billed: canceled, not renewed."""
    if not subscription_ids:
        return []
    return await fetch_all(
        session,
        f"{_CANCEL_AT_END} WHERE id = ANY(:ids) RETURNING *",
        {"ids": subscription_ids},
    )


async def end_trials(session: AsyncSession, as_of: date) -> list[dict[str, Any]]:
    """Trials over by ``as_of`` become active; the first paid period starts when the trial
    ends (and anchors later periods)."""
    return await fetch_all(
        session,
        "UPDATE billing_subscriptions s SET status = 'active', updated_at = now(),"
        " period_plan_id = NULL, period_quantity = NULL, period_price = NULL,"
        " anchor = s.current_period_end,"
        " current_period_start = s.current_period_end,"
        " current_period_end = (s.current_period_end + CASE p.billing_interval"
        " WHEN 'year' THEN interval '1 year' ELSE interval '1 month' END)::date"
        " FROM billing_plans p WHERE p.id = s.plan_id AND s.status = 'trialing'"
        " AND NOT s.cancel_at_period_end AND s.current_period_end <= :as_of RETURNING s.*",
        {"as_of": as_of},
    )


async def lock_due_subscriptions(
    session: AsyncSession, as_of: date, limit: int
) -> list[dict[str, Any]]:
    """Due subscriptions with their plan, locked; rows another run holds are skipped (it bills
    them), so concurrent runs split the work instead of waiting or billing twice."""
    return await fetch_all(
        session,
        "SELECT s.id, s.customer_id, s.quantity, s.anchor, s.current_period_start,"
        " s.cancel_at_period_end,"
        " s.current_period_end, p.name AS plan_name, p.pricing, p.billing_interval,"
        " coalesce(s.period_price, p.price) AS price, p.currency, p.tax_rate,"
        " coalesce(s.period_quantity, s.quantity) AS period_quantity"
        " FROM billing_subscriptions s"
        " JOIN billing_plans p ON p.id = coalesce(s.period_plan_id, s.plan_id)"
        " WHERE s.status IN ('active', 'past_due') AND s.current_period_end <= :as_of"
        " ORDER BY s.current_period_end, s.id LIMIT :limit FOR UPDATE OF s SKIP LOCKED",
        {"as_of": as_of, "limit": limit},
    )


async def advance_periods(session: AsyncSession, periods: list[dict[str, Any]]) -> None:
    await session.execute(
        text(
            "UPDATE billing_subscriptions SET current_period_start = :start,"
            " current_period_end = :end, period_plan_id = NULL, period_quantity = NULL,"
            " period_price = NULL,"
            " updated_at = now() WHERE id = :id"
        ),
        periods,
    )
