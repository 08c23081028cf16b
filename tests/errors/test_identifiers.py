"""Slugs that fit every name made from them (ADR 0136): the longest allowed slug works end to
end, a longer one is refused with 422 before anything exists, and a tenant whose provisioning
failed (even on a slug from before the rule) can be deleted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.provisioning import SLUG_MAX, TenantRef
from plexica.settings import Settings
from plexica.tenants import repository as tenants_repo
from plexica.tenants.errors import ProvisioningFailedError
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from tests.conftest import error_of, running
from tests.support.tokens import StaticIssuers
from tests.tenants.conftest import RecordingStep


@pytest.fixture(scope="module")
def issuers() -> StaticIssuers:
    return StaticIssuers()


@pytest.fixture
async def api(
    settings: Settings, db: Database, issuers: StaticIssuers
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running(create_app(settings, db=db, verifier=issuers.verifier())):
        yield client


def slug_of(length: int) -> str:
    head = "s" + uuid.uuid4().hex[:8]
    return head + "x" * (length - len(head))


async def schema_exists(db: Database, schema: str) -> bool:
    async with db.session() as s:
        r = await s.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema})
        return r.first() is not None


async def test_the_longest_slug_works_end_to_end(
    api: httpx.AsyncClient, issuers: StaticIssuers, db: Database
) -> None:
    op = issuers.operator_headers()
    slug = slug_of(SLUG_MAX)
    r = await api.post(
        "/v1/tenants", json={"slug": slug, "name": "Long", "admin_email": "a@b.example"}, headers=op
    )
    assert r.status_code == 201, r.text
    tenant = r.json()
    assert tenant["state"] == "active"
    ref = TenantRef(uuid.UUID(tenant["id"]), slug, "Long", "a@b.example")
    assert len(ref.schema.encode()) <= 63
    assert len(ref.bucket) <= 63
    assert await schema_exists(db, ref.schema)
    issuers.add_tenant(ref.id, slug)
    admin = {"Authorization": "Bearer " + issuers.token(ref.realm, roles=["tenant_admin"])}
    r = await api.put("/v1/files/objects/hello.txt", content=b"hi", headers=admin)
    assert r.status_code == 201, r.text
    r = await api.delete(f"/v1/tenants/{tenant['id']}", headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "deleted"
    assert not await schema_exists(db, ref.schema)


@pytest.mark.parametrize("length", [SLUG_MAX + 1, 63, 64])
async def test_a_slug_too_long_for_its_names_is_refused_before_anything_exists(
    api: httpx.AsyncClient, issuers: StaticIssuers, db: Database, length: int
) -> None:
    slug = slug_of(length)
    r = await api.post(
        "/v1/tenants",
        json={"slug": slug, "name": "Long", "admin_email": "a@b.example"},
        headers=issuers.operator_headers(),
    )
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] in {"invalid_slug", "validation_error"}
    async with db.session() as s:
        assert await tenants_repo.get_by_slug(s, slug) is None


async def test_a_failed_tenant_on_an_old_slug_can_be_deleted(
    api: httpx.AsyncClient, issuers: StaticIssuers, db: Database
) -> None:
    slug = slug_of(63)  # allowed before ADR 0136: its schema name never fitted
    tenant_id = uuid.uuid4()
    async with db.session() as s:
        await tenants_repo.insert_tenant(s, tenant_id, slug, "Old", "a@b.example")
        await tenants_repo.set_state(
            s, tenant_id, State.PROVISIONING, State.FAILED, failure_reason="step schema failed"
        )
    r = await api.delete(f"/v1/tenants/{tenant_id}", headers=issuers.operator_headers())
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "deleted"


class _UndoFails(RecordingStep):
    async def undo(self, tenant: TenantRef) -> None:
        self.calls.append((self.name, "undo", tenant.slug))
        raise RuntimeError(f"{self.name} undo timed out")


@pytest.mark.parametrize(
    ("failing", "undo_fails"),
    [("realm", False), ("bucket", False), ("plugins", False), ("plugins", True), ("realm", True)],
)
async def test_every_failed_tenant_can_be_deleted(
    db: Database, failing: str, undo_fails: bool
) -> None:
    """Whichever step fails, and even when undoing a step fails too (what it made is left
    behind), the failed tenant's deletion removes everything and ends deleted."""
    steps = [
        (_UndoFails if undo_fails and name == "realm" else RecordingStep)(name)
        for name in ("realm", "bucket", "plugins")
    ]
    for step in steps:
        step.fail_apply = step.name == failing
    service = TenantService(db, steps)
    slug = slug_of(SLUG_MAX)
    with pytest.raises(ProvisioningFailedError):
        await service.create(
            TenantCreate(slug=slug, name="Broken", admin_email="admin@broken.example")
        )
    tenant = await service.get(slug)
    assert tenant.state is State.FAILED
    deleted = await service.delete(slug)
    assert deleted.state is State.DELETED
    for step in steps:
        assert slug not in step.resources, step.name
    assert not await schema_exists(db, tenant.schema_name)
