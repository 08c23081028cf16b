"""Helpers of the Billing kit tests: error codes, subscriptions and CRM's won deals to start
from, and what the plugin wrote, read as the platform's user."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from plexica_sdk.events import Event
from plexica_sdk.testing import KitTenant, PluginTestKit


def error_code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["error"]["code"])


def count(kit: PluginTestKit, tenant: KitTenant, table: str) -> int:
    rows = asyncio.run(kit.fetch(f'SELECT count(*) AS n FROM "{tenant.schema}".{table}'))
    return int(rows[0]["n"])


def sequences(kit: PluginTestKit, tenant: KitTenant, table: str = "billing_invoices") -> list[int]:
    rows = asyncio.run(
        kit.fetch(
            f'SELECT sequence FROM "{tenant.schema}".{table}'
            " WHERE sequence IS NOT NULL ORDER BY sequence"
        )
    )
    return [int(r["sequence"]) for r in rows]


def events(
    kit: PluginTestKit, tenant: KitTenant, event_type: str, subject: str | None = None
) -> list[dict[str, Any]]:
    """The data of the tenant's events of a type (about one subject), in outbox order."""
    rows = asyncio.run(
        kit.fetch(
            "SELECT data FROM platform.outbox WHERE tenant_id = $1 AND type = $2"
            " AND ($3::text IS NULL OR subject = $3) ORDER BY seq",
            tenant.id,
            event_type,
            subject,
        )
    )
    return [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]


def subscribe(http: httpx.Client, customer_id: str, plan: str, quantity: int = 1) -> str:
    """A subscription of the customer to the plan from 2026-01-31 (a month-end anchor)."""
    r = http.post(
        "/v1/subscriptions",
        json={
            "customer_id": customer_id,
            "plan_id": plan,
            "quantity": quantity,
            "start": "2026-01-31",
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def deal_won(
    tenant: KitTenant,
    deal: uuid.UUID,
    company: uuid.UUID | None,
    amount: str,
    *,
    company_name: str = "Globex",
    title: str = "Globex rollout",
) -> Event:
    """CRM's ``crm.deal.won`` of ``deal`` in the tenant, as Billing receives it."""
    return Event(
        source="/plugins/crm",
        type="crm.deal.won",
        tenant_id=tenant.id,
        subject=f"deals/{deal}",
        data={
            "deal_id": str(deal),
            "amount": amount,
            "currency": "EUR",
            "company_id": str(company) if company else None,
            "company_name": company_name,
            "title": title,
        },
    )
