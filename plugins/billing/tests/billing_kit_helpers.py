"""Helpers of the Billing kit tests: error codes and what the plugin wrote, read as the
platform's user."""

from __future__ import annotations

import asyncio

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
