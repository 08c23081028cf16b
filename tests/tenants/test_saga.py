"""The provisioning saga on real PostgreSQL: schema, steps, compensation, retry, duplicates."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from plexica.kit.db import Database
from plexica.kit.migrate import heads
from plexica.tenants.errors import ProvisioningFailedError, TenantExistsError
from plexica.tenants.schemas import State, StepStatus, TenantCreate
from plexica.tenants.service import TenantService
from tests.tenants.conftest import RecordingStep, new_slug, outbox_types, schema_exists


def body(slug: str) -> TenantCreate:
    return TenantCreate(slug=slug, name="Acme Corp", admin_email="admin@acme.example")


async def test_provisioning_creates_stamped_schema_and_emits_event(
    service: TenantService, db: Database
) -> None:
    slug = new_slug()
    tenant = await service.create(body(slug))
    assert tenant.state is State.ACTIVE
    assert tenant.schema_name == "tenant_" + slug.replace("-", "_")
    assert tenant.schema_version == heads("tenant")[0]
    assert await schema_exists(db, tenant.schema_name)
    async with db.session(tenant.schema_name) as s:
        version = (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert version == heads("tenant")[0]
        assert (await s.execute(text("SELECT count(*) FROM settings"))).scalar_one() == 0
    assert await outbox_types(db, tenant.id) == ["plexica.tenant.provisioned"]
    steps = await service.steps_of(tenant.id)
    assert [(s.name, s.status) for s in steps.steps] == [("schema", StepStatus.DONE)]
    assert [h.to_state for h in steps.history] == [State.PROVISIONING, State.ACTIVE]


async def test_failure_undoes_completed_steps_in_reverse_and_leaves_failed(db: Database) -> None:
    realm, bucket, plugins = (
        RecordingStep("realm"),
        RecordingStep("bucket"),
        RecordingStep("plugins"),
    )
    bucket.calls = realm.calls = plugins.calls  # one shared log to see the global order
    plugins.fail_apply = True
    service = TenantService(db, [realm, bucket, plugins])
    slug = new_slug()
    with pytest.raises(ProvisioningFailedError) as caught:
        await service.create(body(slug))
    assert caught.value.code == "provisioning_failed"
    assert realm.calls == [
        ("realm", "apply", slug),
        ("bucket", "apply", slug),
        ("plugins", "apply", slug),
        ("plugins", "undo", slug),
        ("bucket", "undo", slug),
        ("realm", "undo", slug),
    ]
    assert not realm.resources
    assert not bucket.resources
    assert not plugins.resources
    tenant = await service.get(slug)
    assert tenant.state is State.FAILED
    assert tenant.failure_reason is not None
    assert "plugins is down" in tenant.failure_reason
    assert not await schema_exists(db, tenant.schema_name)
    steps = {s.name: s for s in (await service.steps_of(tenant.id)).steps}
    assert {n: s.status for n, s in steps.items()} == {
        "schema": StepStatus.UNDONE,
        "realm": StepStatus.UNDONE,
        "bucket": StepStatus.UNDONE,
        "plugins": StepStatus.UNDONE,
    }
    assert steps["plugins"].error is not None
    assert "plugins is down" in steps["plugins"].error
    assert await outbox_types(db, tenant.id) == ["plexica.tenant.failed"]

    # The dependency recovers: retrying runs every step again and ends active.
    plugins.fail_apply = False
    retried = await service.retry(slug)
    assert retried.state is State.ACTIVE
    assert retried.failure_reason is None
    assert retried.id == tenant.id
    assert await schema_exists(db, tenant.schema_name)
    assert realm.resources == bucket.resources == plugins.resources == {slug}
    assert await outbox_types(db, tenant.id) == [
        "plexica.tenant.failed",
        "plexica.tenant.provisioned",
    ]
    # Retrying an active tenant is an illegal transition and changes nothing.
    with pytest.raises(Exception, match="cannot become provisioning") as again:
        await service.retry(slug)
    assert getattr(again.value, "code", None) == "illegal_transition"


async def test_steps_are_idempotent_when_run_twice(service: TenantService, db: Database) -> None:
    tenant = await service.create(body(new_slug()))
    await service.schema_step.apply(tenant.ref)  # a retry after a crash runs it again
    async with db.session(tenant.schema_name) as s:
        assert (await s.execute(text("SELECT count(*) FROM alembic_version"))).scalar_one() == 1
    # A leftover schema without a stamp is completed, not refused.
    async with db.session(tenant.schema_name) as s:
        await s.execute(text("DROP TABLE alembic_version"))
    await service.schema_step.apply(tenant.ref)
    async with db.session(tenant.schema_name) as s:
        assert (await s.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    await service.schema_step.undo(tenant.ref)
    await service.schema_step.undo(tenant.ref)
    assert not await schema_exists(db, tenant.schema_name)


async def test_same_slug_twice_is_409_also_concurrently(
    service: TenantService, db: Database
) -> None:
    slug = new_slug()
    results = await asyncio.gather(
        *(service.create(body(slug)) for _ in range(5)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, TenantExistsError) for r in refused), refused
    assert all(r.status == 409 and r.code == "tenant_exists" for r in refused)  # type: ignore[attr-defined]
    async with db.session() as s:
        count = await s.execute(
            text("SELECT count(*) FROM platform.tenants WHERE slug = :s"), {"s": slug}
        )
        assert count.scalar_one() == 1


@pytest.mark.parametrize(
    "slug",
    [
        "ab",
        "Acme",
        "1acme",
        "acme-",
        "ac_me",
        "platform",
        "admin",
        "api",
        "public",
        "a--b",
        "x" * 64,
    ],
)
async def test_invalid_or_reserved_slugs_are_refused_before_anything_happens(
    service: TenantService, db: Database, slug: str
) -> None:
    async with db.session() as s:
        before = (await s.execute(text("SELECT count(*) FROM platform.tenants"))).scalar_one()
    with pytest.raises(Exception) as caught:
        await service.create(body(slug))
    assert getattr(caught.value, "code", None) == "invalid_slug"
    assert getattr(caught.value, "status", None) == 422
    async with db.session() as s:
        after = (await s.execute(text("SELECT count(*) FROM platform.tenants"))).scalar_one()
    assert after == before


class Crash(BaseException):
    """Stands for the process dying in the middle of a step (nothing gets compensated)."""


class CrashingStep:
    name = "realm"

    def __init__(self) -> None:
        self.crash = True
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.block = False

    async def apply(self, tenant: object) -> None:
        self.entered.set()
        if self.block:
            await self.release.wait()
        if self.crash:
            raise Crash

    async def undo(self, tenant: object) -> None:
        return None

    async def purge(self, tenant: object) -> None:
        return None


async def test_a_saga_orphaned_by_a_crash_is_resumed_by_retry(db: Database) -> None:
    step = CrashingStep()
    service = TenantService(db, [step])
    slug = new_slug()
    with pytest.raises(Crash):
        await service.create(body(slug))
    orphan = await service.get(slug)
    assert orphan.state is State.PROVISIONING
    statuses = {s.name: s.status for s in (await service.steps_of(slug)).steps}
    assert statuses == {"schema": StepStatus.DONE, "realm": StepStatus.RUNNING}
    step.crash = False
    resumed = await service.retry(slug)
    assert resumed.state is State.ACTIVE
    assert resumed.id == orphan.id


async def test_a_running_saga_is_not_entered_twice(db: Database) -> None:
    step = CrashingStep()
    step.crash, step.block = False, True
    service = TenantService(db, [step])
    slug = new_slug()
    creating = asyncio.create_task(service.create(body(slug)))
    await asyncio.wait_for(step.entered.wait(), 10)
    for attempt in (service.retry, service.delete):
        with pytest.raises(Exception) as caught:
            await attempt(slug)
        assert getattr(caught.value, "code", None) == "tenant_busy"
    step.release.set()
    assert (await creating).state is State.ACTIVE
