"""Helpers of the CRM kit tests: a created record, and what the plugin published, read as the
platform's user."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from plexica_sdk.manifest import load_manifest
from plexica_sdk.testing import KitTenant, PluginTestKit

ROOT = Path(__file__).resolve().parents[1]


def made(r: httpx.Response) -> Any:
    assert r.status_code == 201, r.text
    return r.json()


def events(kit: PluginTestKit, tenant: KitTenant, subject: str) -> list[tuple[str, Any]]:
    """The type and data of the CRM's events about ``subject``, each valid against its schema."""
    schemas = {e.type: e.data_schema or {} for e in load_manifest(ROOT).events.emits}
    rows = asyncio.run(
        kit.fetch(
            "SELECT type, data FROM platform.outbox"
            " WHERE tenant_id = $1 AND subject = $2 ORDER BY seq",
            tenant.id,
            subject,
        )
    )
    out = []
    for row in rows:
        data = json.loads(row["data"])
        validator = Draft202012Validator(
            schemas[row["type"]], format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        assert not list(validator.iter_errors(data)), (row["type"], data)
        out.append((row["type"], data))
    return out
