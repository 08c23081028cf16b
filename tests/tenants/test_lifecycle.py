"""Lifecycle: suspend, reactivate, delete (forward-only, resumable), illegal transitions."""

from __future__ import annotations

import pytest

from plexica.events.service import publish
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.tenants.errors import (
    DeletionIncompleteError,
    IllegalTransitionError,
    TenantNotFoundError,
)
from plexica.tenants.schemas import Phase, State, StepStatus, TenantCreate
from plexica.tenants.service import TenantService
from tests.tenants.conftest import RecordingStep, new_slug, outbox_types, schema_exists


def body(slug: str) -> TenantCreate:
    return TenantCreate(slug=slug, name="Globex", admin_email="ops@globex.example")


async def test_suspend_reactivate_emit_events(service: TenantService, db: Database) -> None:
    tenant = await service.create(body(new_slug()))
    assert (await service.suspend(tenant.id)).state is State.SUSPENDED
    with pytest.raises(IllegalTransitionError):
        await service.suspend(tenant.id)
    assert (await service.reactivate(tenant.slug)).state is State.ACTIVE
    with pytest.raises(IllegalTransitionError):
        await service.reactivate(tenant.id)
    assert await outbox_types(db, tenant.id) == [
        "plexica.tenant.provisioned",
        "plexica.tenant.suspended",
        "plexica.tenant.reactivated",
    ]


async def test_deletion_survives_a_failed_purge_and_resumes(db: Database) -> None:
    realm, bucket = RecordingStep("realm"), RecordingStep("bucket")
    bucket.calls = realm.calls
    service = TenantService(db, [realm, bucket])
    tenant = await service.create(body(new_slug()))
    async with db.session() as s:
        await publish(s, "sample.test.pending", {}, tenant_id=tenant.id)
    realm.calls.clear()
    realm.fail_purge = 1  # the identity provider times out once, mid-way

    with pytest.raises(DeletionIncompleteError) as caught:
        await service.delete(tenant.id)
    assert caught.value.status == 502
    assert caught.value.code == "deletion_incomplete"
    stuck = await service.get(tenant.id)
    assert stuck.state is State.PENDING_DELETION
    assert stuck.failure_reason is not None
    assert "realm purge timed out" in stuck.failure_reason
    # Events went first, then the schema, then the bucket; the realm failed.
    assert not await schema_exists(db, tenant.schema_name)
    assert await outbox_types(db, tenant.id) == []
    assert bucket.resources == set()
    assert realm.resources == {tenant.slug}
    steps = {
        s.name: s.status
        for s in (await service.steps_of(tenant.id)).steps
        if s.phase is Phase.DELETE
    }
    assert steps == {
        "events": StepStatus.DONE,
        "schema": StepStatus.DONE,
        "bucket": StepStatus.DONE,
        "realm": StepStatus.FAILED,
    }
    # Forward-only: it cannot be reactivated now.
    with pytest.raises(IllegalTransitionError):
        await service.reactivate(tenant.id)

    deleted = await service.delete(tenant.id)
    assert deleted.state is State.DELETED
    assert deleted.deleted_at is not None
    assert realm.resources == set()
    # The resumed run only did what was left.
    assert realm.calls == [
        ("bucket", "purge", tenant.slug),
        ("realm", "purge", tenant.slug),
        ("realm", "purge", tenant.slug),
    ]
    assert await outbox_types(db, tenant.id) == ["plexica.tenant.deleted"]
    for illegal in (service.reactivate, service.suspend, service.retry, service.delete):
        with pytest.raises(IllegalTransitionError):
            await illegal(tenant.id)
    # The slug is free again; the deleted one stays on record.
    again = await service.create(body(tenant.slug))
    assert again.id != tenant.id
    assert again.state is State.ACTIVE
    assert (await service.get(tenant.id)).state is State.DELETED


async def test_failed_tenant_can_be_deleted(db: Database) -> None:
    broken = RecordingStep("bucket", fail_apply=True)
    service = TenantService(db, [broken])
    slug = new_slug()
    with pytest.raises(Exception, match="step bucket"):
        await service.create(body(slug))
    assert (await service.delete(slug)).state is State.DELETED


class UndoFails(RecordingStep):
    """Its compensation fails too: the failed tenant keeps this step's resource."""

    async def undo(self, tenant: TenantRef) -> None:
        self.calls.append((self.name, "undo", tenant.slug))
        raise RuntimeError(f"{self.name} undo timed out")


async def test_a_failed_tenant_whose_compensation_failed_is_retried_or_deleted(
    db: Database,
) -> None:
    bucket, realm = UndoFails("bucket"), RecordingStep("realm", fail_apply=True)
    service = TenantService(db, [bucket, realm])
    retried, deleted = new_slug(), new_slug()
    for slug in (retried, deleted):
        with pytest.raises(Exception, match="step realm"):
            await service.create(body(slug))
        tenant = await service.get(slug)
        assert tenant.state is State.FAILED
        recorded = (await service.steps_of(tenant.id)).steps
        steps = {s.name: s for s in recorded if s.phase is Phase.PROVISION}
        assert steps["bucket"].status is StepStatus.FAILED
        assert "undo timed out" in (steps["bucket"].error or "")
    assert bucket.resources == {retried, deleted}

    realm.fail_apply = False
    assert (await service.retry(retried)).state is State.ACTIVE
    assert (await service.delete(deleted)).state is State.DELETED
    assert bucket.resources == {retried}  # the delete purged what the failed undo left
    assert not await schema_exists(db, (await service.get(deleted)).ref.schema)


async def test_unknown_tenant_is_404(service: TenantService) -> None:
    for key in ("no-such-tenant", "00000000-0000-0000-0000-000000000000", "'; drop", "x" * 100):
        with pytest.raises(TenantNotFoundError):
            await service.get(key)
        with pytest.raises(TenantNotFoundError):
            await service.suspend(key)
