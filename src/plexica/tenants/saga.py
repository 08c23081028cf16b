"""The provisioning saga and the deletion sequence.

Each step's status is committed before and after it runs, so a crash leaves a record of where it
stopped. Provisioning undoes what it did, in reverse, when a step fails; deletion only moves
forward and is resumed by running it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import structlog
from alembic.script import ScriptDirectory

from plexica.events.service import purge_tenant_events
from plexica.kit.db import Database
from plexica.kit.migrate import alembic_config
from plexica.kit.provisioning import ProvisioningStep, TenantRef
from plexica.tenants import repository
from plexica.tenants.schemas import Phase, StepStatus

log = structlog.get_logger("plexica.tenants.saga")


class SchemaStep:
    """The tenant's PostgreSQL schema, created from the head model and stamped (ADR 0030)."""

    name = "schema"

    def __init__(self, db: Database, script: ScriptDirectory | None = None) -> None:
        self.db = db
        script = script or ScriptDirectory.from_config(alembic_config("tenant"))
        head = script.get_current_head()
        assert head is not None, "the tenant migration tree has no single head"
        self.head = head

    async def apply(self, tenant: TenantRef) -> None:
        async with self.db.session() as session:
            version = await repository.create_schema(session, tenant.schema, self.head)
            await repository.set_schema_version(session, tenant.id, version)

    async def undo(self, tenant: TenantRef) -> None:
        async with self.db.session() as session:
            await repository.drop_schema(session, tenant.schema)
            await repository.set_schema_version(session, tenant.id, None)

    async def purge(self, tenant: TenantRef) -> None:
        await self.undo(tenant)


class OutboxPurgeStep:
    """Deletion only: the tenant's undelivered events go before its data does."""

    name = "events"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def apply(self, tenant: TenantRef) -> None:
        return None

    async def undo(self, tenant: TenantRef) -> None:
        return None

    async def purge(self, tenant: TenantRef) -> None:
        async with self.db.session() as session:
            purged = await purge_tenant_events(session, tenant.id)
        log.info("tenant_events_purged", tenant_id=str(tenant.id), count=purged)


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:500]


class StepFailedError(Exception):
    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"step {step} failed: {describe(cause)}")
        self.step = step
        self.reason = f"step {step} failed: {describe(cause)}"


async def _mark(
    db: Database, tenant_id: UUID, phase: Phase, name: str, status: StepStatus, *, error: str | None
) -> None:
    async with db.session() as session:
        await repository.set_step(session, tenant_id, phase, name, status=status, error=error)


async def _failed(
    db: Database,
    tenant: TenantRef,
    phase: Phase,
    step: ProvisioningStep,
    exc: BaseException,
    *,
    event: str,
    prefix: str = "",
) -> None:
    """Log a step's failure and keep it on the step's record."""
    log.warning(event, tenant_id=str(tenant.id), step=step.name, exc=describe(exc))
    await _mark(db, tenant.id, phase, step.name, StepStatus.FAILED, error=prefix + describe(exc))


async def provision(db: Database, tenant: TenantRef, steps: Sequence[ProvisioningStep]) -> None:
    """Apply every step; on failure undo the applied ones in reverse and raise StepFailedError."""
    applied: list[ProvisioningStep] = []
    for step in steps:
        await _mark(db, tenant.id, Phase.PROVISION, step.name, StepStatus.RUNNING, error=None)
        # Counted as applied before it runs: a step that fails half-way is undone too.
        applied.append(step)
        try:
            await step.apply(tenant)
        except Exception as exc:
            await _failed(db, tenant, Phase.PROVISION, step, exc, event="tenant_step_failed")
            await _compensate(db, tenant, applied, describe(exc))
            raise StepFailedError(step.name, exc) from exc
        await _mark(db, tenant.id, Phase.PROVISION, step.name, StepStatus.DONE, error=None)


async def _compensate(
    db: Database, tenant: TenantRef, applied: list[ProvisioningStep], error: str
) -> None:
    failed = applied[-1]
    for step in reversed(applied):
        try:
            await step.undo(tenant)
        except Exception as exc:  # noqa: BLE001 - any failure of a step is recorded, not raised
            # Keep undoing the rest; the step stays marked so that a retry or a delete cleans it.
            await _failed(
                db, tenant, Phase.PROVISION, step, exc, event="tenant_undo_failed", prefix="undo: "
            )
            continue
        # The failed step keeps its error on record after being undone.
        await _mark(
            db, tenant.id, Phase.PROVISION, step.name, StepStatus.UNDONE,
            error=error if step is failed else None,
        )  # fmt: skip


async def delete(
    db: Database, tenant: TenantRef, steps: Sequence[ProvisioningStep], done: set[str]
) -> None:
    """Purge every step not yet done, in order; stop at the first failure (StepFailedError)."""
    for step in steps:
        if step.name in done:
            continue
        await _mark(db, tenant.id, Phase.DELETE, step.name, StepStatus.RUNNING, error=None)
        try:
            await step.purge(tenant)
        except Exception as exc:
            await _failed(db, tenant, Phase.DELETE, step, exc, event="tenant_purge_failed")
            raise StepFailedError(step.name, exc) from exc
        await _mark(db, tenant.id, Phase.DELETE, step.name, StepStatus.DONE, error=None)
