"""Helpers of the Billing kit tests: error codes and what the plugin wrote, read as the
platform's user."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

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
