"""Every core event of a tenant's lifecycle names its schema (``dataschema``, ADR 0182), and its
data, as stored, meets the schema the core serves at that path."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import text

from plexica.app import create_app
from plexica.events import service as events
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica.tenants.schemas import TenantCreate
from plexica.tenants.service import TenantService
from plexica_sdk.events import InvalidEventError
from tests.conftest import running
from tests.tenants.conftest import RecordingStep, new_slug


def body(slug: str) -> TenantCreate:
    return TenantCreate(slug=slug, name="Globex", admin_email="ops@globex.example")


class Checked:
    """The tenant's outbox rows not seen yet, each validated against its served schema."""

    def __init__(self, db: Database, http: httpx.AsyncClient) -> None:
        self.db, self.http = db, http
        self.seen: set[uuid.UUID] = set()
        self.types: list[str] = []

    async def rows(self, tenant_id: uuid.UUID) -> None:
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    text(
                        "SELECT id, type, source, dataschema, data FROM platform.outbox"
                        " WHERE tenant_id = :t ORDER BY seq"
                    ),
                    {"t": tenant_id},
                )
            ).all()
        for row in rows:
            if row.id in self.seen:
                continue
            self.seen.add(row.id)
            self.types.append(row.type)
            assert row.source == "/plexica/core"
            assert row.dataschema == f"/v1/events/schemas/{row.type}/1", row
            served = await self.http.get(row.dataschema)
            assert served.status_code == 200, served.text
            schema: dict[str, Any] = served.json()
            validator = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            data = row.data if isinstance(row.data, dict) else json.loads(row.data)
            assert not list(validator.iter_errors(data)), (row.type, data)


async def test_every_core_event_of_a_tenant_lifecycle_meets_its_served_schema(
    settings: Settings, db: Database
) -> None:
    service = TenantService(db, [RecordingStep("realm")])
    async for http in running(create_app(settings, db=db)):
        checked = Checked(db, http)
        tenant = await service.create(body(new_slug()))
        await checked.rows(tenant.id)
        await service.suspend(tenant.id)
        await service.reactivate(tenant.id)
        await checked.rows(tenant.id)
        await service.delete(tenant.id)  # drops the pending ones: they were checked above
        await checked.rows(tenant.id)

        failing = TenantService(db, [RecordingStep("bucket", fail_apply=True)])
        slug = new_slug()
        with pytest.raises(Exception, match="step bucket"):
            await failing.create(body(slug))
        await checked.rows((await failing.get(slug)).id)

    assert checked.types == [
        "plexica.tenant.provisioned",
        "plexica.tenant.suspended",
        "plexica.tenant.reactivated",
        "plexica.tenant.deleted",
        "plexica.tenant.failed",
    ]


async def test_a_core_event_that_does_not_meet_its_schema_rolls_its_change_back(
    db: Database,
) -> None:
    tenant = uuid.uuid4()
    with pytest.raises(InvalidEventError):
        async with db.session() as s:
            await s.execute(text("SELECT 1"))
            await events.publish(s, "plexica.plugin.enabled", {"plugin": "crm"}, tenant_id=tenant)
    async with db.session() as s:
        left = await s.execute(
            text("SELECT count(*) FROM platform.outbox WHERE tenant_id = :t"), {"t": tenant}
        )
        assert left.scalar_one() == 0
