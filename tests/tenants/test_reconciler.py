"""The reconciler finishes tenant sagas a crash interrupted, and two replicas never run one twice."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.tenants.errors import DeletionIncompleteError
from plexica.tenants.reconciler import Reconciler
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from tests.tenants.conftest import RecordingStep, new_slug, schema_exists


class Crash(BaseException):
    pass


class FlakyStep:
    """Crashes (the process 'dies' mid-step) until told not to; can hold a saga inside it."""

    name = "realm"

    def __init__(self) -> None:
        self.crash = True
        self.fail = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.applied: list[str] = []

    async def apply(self, tenant: TenantRef) -> None:
        self.entered.set()
        await self.release.wait()
        if self.crash:
            raise Crash
        if self.fail:
            raise RuntimeError("the realm service refuses")
        self.applied.append(tenant.slug)

    async def undo(self, tenant: TenantRef) -> None:
        return None

    async def purge(self, tenant: TenantRef) -> None:
        return None


def body(slug: str) -> TenantCreate:
    return TenantCreate(slug=slug, name="R", admin_email=f"a@{slug}.example")


async def orphan(service: TenantService, step: FlakyStep) -> str:
    """A tenant left ``provisioning`` by a saga that died inside its second step."""
    slug = new_slug("rc")
    with contextlib.suppress(Crash):
        await service.create(body(slug))
    assert (await service.get(slug)).state is State.PROVISIONING
    step.crash = False
    return slug


async def test_an_orphaned_provisioning_is_finished_by_one_replica_only(db: Database) -> None:
    step = FlakyStep()
    first, second = TenantService(db, [step]), TenantService(db, [step])
    slug = await orphan(first, step)
    tenant = await first.get(slug)
    step.entered.clear()
    step.release.clear()
    # Replica one takes the tenant and is held inside the step; replica two finds it busy.
    one = asyncio.create_task(Reconciler(first).pass_once())
    await asyncio.wait_for(step.entered.wait(), 30)
    assert tenant.id not in await Reconciler(second).pass_once()
    step.release.set()
    assert tenant.id in await asyncio.wait_for(one, 30)
    assert (await first.get(slug)).state is State.ACTIVE
    assert step.applied == [slug]
    assert tenant.id not in await Reconciler(second).pass_once()


async def test_an_orphaned_deletion_is_finished(db: Database) -> None:
    purging = RecordingStep("bucket", fail_purge=1)
    service = TenantService(db, [purging])
    slug = new_slug("rd")
    tenant = await service.create(body(slug))
    with pytest.raises(DeletionIncompleteError):
        await service.delete(slug)
    assert (await service.get(slug)).state is State.PENDING_DELETION
    assert tenant.id in await Reconciler(service).pass_once()
    assert (await service.get(slug)).state is State.DELETED
    assert not await schema_exists(db, tenant.ref.schema)


async def test_a_failing_step_rolls_a_resumed_saga_back_and_the_tenant_can_be_deleted(
    db: Database,
) -> None:
    step = FlakyStep()
    service = TenantService(db, [step])
    slug = await orphan(service, step)
    step.fail = True  # still broken when resumed: rolled back, not left provisioning
    await Reconciler(service).pass_once()
    failed = await service.get(slug)
    assert failed.state is State.FAILED
    assert not await schema_exists(db, failed.ref.schema)
    assert (await service.delete(slug)).state is State.DELETED


async def test_finished_tenants_are_left_alone(db: Database) -> None:
    step = FlakyStep()
    step.crash = False
    service = TenantService(db, [step])
    tenant = await service.create(body(new_slug("rf")))
    assert tenant.id not in await Reconciler(service).pass_once()
    assert step.applied == [tenant.slug]
