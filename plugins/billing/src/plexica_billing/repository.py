"""SQL of Billing: the plugin's own tables in the caller's tenant schema (``billing_*``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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


def _one(row: Any) -> dict[str, Any] | None:
    found = row.mappings().first()
    return dict(found) if found else None


def _where(clauses: list[str]) -> str:
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
    return _one(await session.execute(text(sql), {"id": id_}))


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
            row = await session.execute(text(sql), {**values, "id": id_})
            return dict(row.mappings().one())
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


# --- customers -------------------------------------------------------------------------------


async def list_customers(
    session: AsyncSession, q: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = "WHERE strpos(lower(name), :q) > 0" if q else ""
    sql = f"SELECT * FROM billing_customers {where} ORDER BY lower(name), id"  # noqa: S608
    return await _page(session, sql, {"q": (q or "").lower()}, limit, offset)


async def insert_customer(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO billing_customers (name, email, currency, crm_company_id)"
            " VALUES (:name, :email, :currency, :crm_company_id) RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def upsert_crm_customer(
    session: AsyncSession, company_id: UUID, name: str, currency: str
) -> dict[str, Any]:
    """The customer of a CRM company, created on first sight (races resolved by the unique
    company id)."""
    row = await session.execute(
        text(
            "INSERT INTO billing_customers (name, currency, crm_company_id)"
            " VALUES (:name, :currency, :company) ON CONFLICT (crm_company_id)"
            " DO UPDATE SET name = EXCLUDED.name, updated_at = now() RETURNING *"
        ),
        {"name": name, "currency": currency, "company": company_id},
    )
    return dict(row.mappings().one())


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
    row = await session.execute(
        text(
            "INSERT INTO billing_plans (code, name, pricing, billing_interval, price, currency,"
            " tax_rate) VALUES (:code, :name, :pricing, :billing_interval, :price, :currency,"
            " :tax_rate) ON CONFLICT (code) DO NOTHING RETURNING *"
        ),
        values,
    )
    return _one(row)


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


# --- subscriptions ---------------------------------------------------------------------------


async def list_subscriptions(
    session: AsyncSession, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    clauses = []
    if status:
        clauses.append("status = :status")
    if customer_id:
        clauses.append("customer_id = :customer")
    sql = f"SELECT * FROM billing_subscriptions {_where(clauses)} ORDER BY created_at DESC, id"  # noqa: S608
    return await _page(session, sql, {"status": status, "customer": customer_id}, limit, offset)


async def insert_subscription(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO billing_subscriptions (customer_id, plan_id, status, quantity, anchor,"
            " current_period_start, current_period_end) VALUES (:customer_id, :plan_id, :status,"
            " :quantity, :start, :start, :end) RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def update_subscription(
    session: AsyncSession,
    subscription_id: UUID,
    plan_id: UUID,
    quantity: int,
    status: str,
    *,
    keep_period: bool = False,
) -> dict[str, Any]:
    """Set plan, seats and status; with ``keep_period`` the current period's base line keeps
    billing the plan and seats it started with (the change is prorated on top)."""
    row = await session.execute(
        text(
            "UPDATE billing_subscriptions SET plan_id = :plan, quantity = :quantity,"
            " status = :status, updated_at = now(),"
            " period_plan_id = CASE WHEN :keep THEN coalesce(period_plan_id, plan_id)"
            "  ELSE period_plan_id END,"
            " period_quantity = CASE WHEN :keep THEN coalesce(period_quantity, quantity)"
            "  ELSE period_quantity END,"
            # The pinned price belongs to the period's plan: gone when that plan is left unkept.
            " period_price = CASE WHEN :keep OR plan_id = :plan THEN period_price END,"
            " canceled_at = CASE WHEN :status = 'canceled' THEN now() ELSE NULL END"
            " WHERE id = :id RETURNING *"
        ),
        {
            "plan": plan_id,
            "quantity": quantity,
            "status": status,
            "id": subscription_id,
            "keep": keep_period,
        },
    )
    return dict(row.mappings().one())


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
    row = await session.execute(text(sql), {"id": subscription_id})
    return _one(row)


async def insert_items(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    if values:
        await session.execute(
            text(
                "INSERT INTO billing_subscription_items (subscription_id, description, amount,"
                " tax_rate) VALUES (:subscription_id, :description, :amount, :tax_rate)"
            ),
            values,
        )


async def pending_items(session: AsyncSession, subscription_id: UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT * FROM billing_subscription_items WHERE subscription_id = :id"
            " AND invoice_id IS NULL ORDER BY created_at, id"
        ),
        {"id": subscription_id},
    )
    return [dict(r) for r in rows.mappings()]


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
    if items:
        await session.execute(
            text(
                "UPDATE billing_subscription_items SET invoice_id = :invoice_id"
                " WHERE id = :id AND invoice_id IS NULL"
            ),
            items,
        )
    if usage:
        await session.execute(
            text(
                "UPDATE billing_usage_records SET invoice_id = :invoice_id"
                " WHERE id = ANY(:ids) AND invoice_id IS NULL"
            ),
            usage,
        )


# --- usage -----------------------------------------------------------------------------------


async def insert_usage(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any] | None:
    """The new record, or None when its idempotency key is already recorded."""
    row = await session.execute(
        text(
            "INSERT INTO billing_usage_records (subscription_id, idempotency_key, quantity,"
            " unit_price, tax_rate, occurred_at) VALUES (:subscription_id, :key, :quantity,"
            " :unit_price, :tax_rate, :occurred_at) ON CONFLICT (idempotency_key) DO NOTHING"
            " RETURNING *"
        ),
        values,
    )
    return _one(row)


async def usage_by_key(session: AsyncSession, key: str) -> dict[str, Any] | None:
    return _one(
        await session.execute(
            text("SELECT * FROM billing_usage_records WHERE idempotency_key = :k"), {"k": key}
        )
    )


async def list_usage(
    session: AsyncSession, subscription_id: UUID, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    sql = (
        "SELECT * FROM billing_usage_records WHERE subscription_id = :sub"
        " ORDER BY occurred_at DESC, id"
    )
    return await _page(session, sql, {"sub": subscription_id}, limit, offset)


async def end_trials(session: AsyncSession, as_of: date) -> list[dict[str, Any]]:
    """Trials over by ``as_of`` become active; the first paid period starts when the trial
    ends (and anchors later periods)."""
    rows = await session.execute(
        text(
            "UPDATE billing_subscriptions s SET status = 'active', updated_at = now(),"
            " period_plan_id = NULL, period_quantity = NULL, period_price = NULL,"
            " anchor = s.current_period_end,"
            " current_period_start = s.current_period_end,"
            " current_period_end = (s.current_period_end + CASE p.billing_interval"
            " WHEN 'year' THEN interval '1 year' ELSE interval '1 month' END)::date"
            " FROM billing_plans p WHERE p.id = s.plan_id AND s.status = 'trialing'"
            " AND s.current_period_end <= :as_of RETURNING s.*"
        ),
        {"as_of": as_of},
    )
    return [dict(r) for r in rows.mappings()]


async def lock_due_subscriptions(
    session: AsyncSession, as_of: date, limit: int
) -> list[dict[str, Any]]:
    """Due subscriptions with their plan, locked; rows another run holds are skipped (it bills
    them), so concurrent runs split the work instead of waiting or billing twice."""
    rows = await session.execute(
        text(
            "SELECT s.id, s.customer_id, s.quantity, s.anchor, s.current_period_start,"
            " s.current_period_end, p.name AS plan_name, p.pricing, p.billing_interval,"
            " coalesce(s.period_price, p.price) AS price, p.currency, p.tax_rate,"
            " coalesce(s.period_quantity, s.quantity) AS period_quantity"
            " FROM billing_subscriptions s"
            " JOIN billing_plans p ON p.id = coalesce(s.period_plan_id, s.plan_id)"
            " WHERE s.status IN ('active', 'past_due') AND s.current_period_end <= :as_of"
            " ORDER BY s.current_period_end, s.id LIMIT :limit FOR UPDATE OF s SKIP LOCKED"
        ),
        {"as_of": as_of, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


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


# --- invoices --------------------------------------------------------------------------------


async def list_invoices(
    session: AsyncSession,
    status: str | None,
    customer_id: UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    clauses = []
    if status:
        clauses.append("status = :status")
    if customer_id:
        clauses.append("customer_id = :customer")
    sql = (
        f"SELECT * FROM billing_invoices {_where(clauses)}"  # noqa: S608
        " ORDER BY sequence DESC NULLS FIRST, created_at DESC, id"
    )
    return await _page(session, sql, {"status": status, "customer": customer_id}, limit, offset)


async def insert_invoice(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO billing_invoices (customer_id, currency, status, crm_deal_id)"
            " VALUES (:customer_id, :currency, 'draft', :crm_deal_id) RETURNING *"
        ),
        {"crm_deal_id": None, **values},
    )
    return dict(row.mappings().one())


async def invoice_by_deal(session: AsyncSession, deal_id: UUID) -> dict[str, Any] | None:
    """The deal's invoice. Two deliveries of one deal (distinct event ids) queue on a lock of
    the deal until the first commits: a row lock cannot hold an invoice that does not exist."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('billing.deal:' || :d, 0))"),
        {"d": str(deal_id)},
    )
    return _one(
        await session.execute(
            text("SELECT * FROM billing_invoices WHERE crm_deal_id = :d FOR UPDATE"), {"d": deal_id}
        )
    )


async def lines(session: AsyncSession, invoice_id: UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        text("SELECT * FROM billing_invoice_lines WHERE invoice_id = :id ORDER BY position"),
        {"id": invoice_id},
    )
    return [dict(r) for r in rows.mappings()]


async def insert_lines(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    if values:
        await session.execute(
            text(
                "INSERT INTO billing_invoice_lines (invoice_id, position, description, quantity,"
                " unit_price, tax_rate, amount, tax, kind) VALUES (:invoice_id, :position,"
                " :description, :quantity, :unit_price, :tax_rate, :amount, :tax, :kind)"
            ),
            [{"kind": "charge", **v} for v in values],
        )


async def delete_lines(session: AsyncSession, invoice_id: UUID) -> None:
    await session.execute(
        text("DELETE FROM billing_invoice_lines WHERE invoice_id = :id"), {"id": invoice_id}
    )


async def set_totals(
    session: AsyncSession, invoice_id: UUID, subtotal: Decimal, tax: Decimal
) -> None:
    await session.execute(
        text(
            "UPDATE billing_invoices SET subtotal = :subtotal, tax = :tax,"
            " total = :total, updated_at = now() WHERE id = :id"
        ),
        {"subtotal": subtotal, "tax": tax, "total": subtotal + tax, "id": invoice_id},
    )


async def take_numbers(session: AsyncSession, count: int, series: str = "invoice") -> int:
    """Reserve ``count`` numbers of ``series``; returns the first. The counter row stays locked
    until the transaction ends, and a rollback gives the numbers back: no gaps, no duplicates."""
    row = await session.execute(
        text(
            "UPDATE billing_counters SET value = value + :n WHERE name = :series"
            " RETURNING value - :n + 1"
        ),
        {"n": count, "series": series},
    )
    return int(row.scalar_one())


async def mark_issued(
    session: AsyncSession, invoice_id: UUID, number: str, sequence: int, terms_days: int
) -> dict[str, Any]:
    row = await session.execute(
        text(
            "UPDATE billing_invoices SET status = 'open', number = :number, sequence = :seq,"
            " issued_at = now(), due_at = now() + make_interval(days => CAST(:days AS int)),"
            " updated_at = now() WHERE id = :id RETURNING *"
        ),
        {"number": number, "seq": sequence, "days": terms_days, "id": invoice_id},
    )
    return dict(row.mappings().one())


async def insert_issued_invoices(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    await session.execute(
        text(
            "INSERT INTO billing_invoices (id, customer_id, subscription_id, period_start,"
            " period_end, status, number, sequence, currency, subtotal, tax, total, issued_at,"
            " due_at, paid_at) VALUES (:id, :customer_id, :subscription_id, :period_start,"
            " :period_end, :status, :number, :sequence, :currency, :subtotal, :tax, :total,"
            " now(), now() + make_interval(days => CAST(:days AS int)),"
            " CASE WHEN :status = 'paid' THEN now() END)"
        ),
        [{"status": "open", **v} for v in values],
    )


async def set_status(session: AsyncSession, invoice_id: UUID, status: str) -> dict[str, Any]:
    row = await session.execute(
        text(
            "UPDATE billing_invoices SET status = :status, updated_at = now(),"
            " paid_at = CASE WHEN :status = 'paid' THEN now() ELSE paid_at END,"
            " voided_at = CASE WHEN :status = 'void' THEN now() ELSE voided_at END"
            " WHERE id = :id RETURNING *"
        ),
        {"status": status, "id": invoice_id},
    )
    return dict(row.mappings().one())


async def insert_payment(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO billing_payments (invoice_id, amount, currency, provider, reference,"
            " created_by) VALUES (:invoice_id, :amount, :currency, :provider, :reference, :by)"
            " RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def payments(session: AsyncSession, invoice_id: UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        text("SELECT * FROM billing_payments WHERE invoice_id = :id ORDER BY created_at"),
        {"id": invoice_id},
    )
    return [dict(r) for r in rows.mappings()]


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


# --- credit notes ----------------------------------------------------------------------------


async def insert_credit_note(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await session.execute(
        text(
            "INSERT INTO billing_credit_notes (invoice_id, number, sequence, kind, amount, tax,"
            " currency, reason, created_by) VALUES (:invoice_id, :number, :sequence, :kind,"
            " :amount, :tax, :currency, :reason, :by) RETURNING *"
        ),
        values,
    )
    return dict(row.mappings().one())


async def add_credited(
    session: AsyncSession, invoice_id: UUID, amount: Decimal, status: str
) -> None:
    await session.execute(
        text(
            "UPDATE billing_invoices SET credited = credited + :amount, status = :status,"
            " paid_at = CASE WHEN :status = 'paid' THEN coalesce(paid_at, now()) END,"
            " updated_at = now() WHERE id = :id"
        ),
        {"amount": amount, "status": status, "id": invoice_id},
    )


async def credit_notes(session: AsyncSession, invoice_id: UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        text("SELECT * FROM billing_credit_notes WHERE invoice_id = :id ORDER BY sequence"),
        {"id": invoice_id},
    )
    return [dict(r) for r in rows.mappings()]


async def list_credit_notes(
    session: AsyncSession, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    sql = "SELECT * FROM billing_credit_notes ORDER BY sequence DESC"
    return await _page(session, sql, {}, limit, offset)


async def first_delivery(session: AsyncSession, event: Event, consumer: str) -> bool:
    return await sdk_first_delivery(session, event, consumer, table="billing_processed_events")
