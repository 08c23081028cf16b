"""SQL of Billing's invoices: their lines, numbering (``billing_counters``), payments and credit
notes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_billing.repository import where_status_and_customer
from plexica_sdk.db import execute_many, fetch_all, fetch_first, fetch_one
from plexica_sdk.db import page as _page

# --- invoices --------------------------------------------------------------------------------


async def list_invoices(
    session: AsyncSession,
    status: str | None,
    customer_id: UUID | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    where = where_status_and_customer(status, customer_id)
    sql = (
        f"SELECT * FROM billing_invoices {where}"  # noqa: S608
        " ORDER BY sequence DESC NULLS FIRST, created_at DESC, id"
    )
    return await _page(session, sql, {"status": status, "customer": customer_id}, limit, offset)


async def insert_invoice(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO billing_invoices (customer_id, currency, status, crm_deal_id)"
        " VALUES (:customer_id, :currency, 'draft', :crm_deal_id) RETURNING *",
        {"crm_deal_id": None, **values},
    )


async def invoice_by_deal(session: AsyncSession, deal_id: UUID) -> dict[str, Any] | None:
    """The deal's invoice. Two deliveries of one deal (distinct event ids) queue on a lock of
    the deal until the first commits: a row lock cannot hold an invoice that does not exist."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('billing.deal:' || :d, 0))"),
        {"d": str(deal_id)},
    )
    return await fetch_first(
        session, "SELECT * FROM billing_invoices WHERE crm_deal_id = :d FOR UPDATE", {"d": deal_id}
    )


async def lines(session: AsyncSession, invoice_id: UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        session,
        "SELECT * FROM billing_invoice_lines WHERE invoice_id = :id ORDER BY position",
        {"id": invoice_id},
    )


async def insert_lines(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    await execute_many(
        session,
        "INSERT INTO billing_invoice_lines (invoice_id, position, description, quantity,"
        " unit_price, tax_rate, amount, tax, kind) VALUES (:invoice_id, :position,"
        " :description, :quantity, :unit_price, :tax_rate, :amount, :tax, :kind)",
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
    return await fetch_one(
        session,
        "UPDATE billing_invoices SET status = 'open', number = :number, sequence = :seq,"
        " issued_at = now(), due_at = now() + make_interval(days => CAST(:days AS int)),"
        " updated_at = now() WHERE id = :id RETURNING *",
        {"number": number, "seq": sequence, "days": terms_days, "id": invoice_id},
    )


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
    return await fetch_one(
        session,
        "UPDATE billing_invoices SET status = :status, updated_at = now(),"
        " paid_at = CASE WHEN :status = 'paid' THEN now() ELSE paid_at END,"
        " voided_at = CASE WHEN :status = 'void' THEN now() ELSE voided_at END"
        " WHERE id = :id RETURNING *",
        {"status": status, "id": invoice_id},
    )


async def insert_payment(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO billing_payments (invoice_id, amount, currency, provider, reference,"
        " created_by) VALUES (:invoice_id, :amount, :currency, :provider, :reference, :by)"
        " RETURNING *",
        values,
    )


async def payments(session: AsyncSession, invoice_id: UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        session,
        "SELECT * FROM billing_payments WHERE invoice_id = :id ORDER BY created_at",
        {"id": invoice_id},
    )


# --- credit notes ----------------------------------------------------------------------------


async def insert_credit_note(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    return await fetch_one(
        session,
        "INSERT INTO billing_credit_notes (invoice_id, number, sequence, kind, amount, tax,"
        " currency, reason, created_by) VALUES (:invoice_id, :number, :sequence, :kind,"
        " :amount, :tax, :currency, :reason, :by) RETURNING *",
        values,
    )


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
    return await fetch_all(
        session,
        "SELECT * FROM billing_credit_notes WHERE invoice_id = :id ORDER BY sequence",
        {"id": invoice_id},
    )


async def list_credit_notes(
    session: AsyncSession, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    sql = "SELECT * FROM billing_credit_notes ORDER BY sequence DESC"
    return await _page(session, sql, {}, limit, offset)
