"""Tenant lifecycle: create (provisioning saga), suspend, reactivate, delete, retry, read; the
tenant's own settings and branding are in ``settings`` (the base class).

The saga spans several transactions by nature (an external resource cannot join ours), so the
service opens its own unit of work per step; each state change and its event commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from uuid import UUID

import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import Database
from plexica.kit.provisioning import ProvisioningStep, SuspendableStep, TenantRef
from plexica.tenants import events, lifecycle_audit, repository, saga
from plexica.tenants.cache import TenantCache
from plexica.tenants.errors import (
    DeletionIncompleteError,
    IllegalTransitionError,
    ProvisioningFailedError,
    TenantBusyError,
    TenantExistsError,
    TenantNotFoundError,
)
from plexica.tenants.schemas import (
    TRANSITIONS,
    Phase,
    ProvisioningStatus,
    State,
    StepStatus,
    Tenant,
    TenantCreate,
    TenantPage,
    TenantSteps,
    validate_email,
    validate_slug,
)
from plexica.tenants.settings import TenantSettings
from plexica_sdk.errors import PlexicaError

PLATFORM = "platform"  # the actor of the CLI, the reconciler and restores
log = structlog.get_logger("plexica.tenants")

PROVISIONING_SECONDS = Histogram(
    "plexica_tenant_provisioning_seconds",
    "Duration of the tenant provisioning saga by outcome.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# On shutdown, background sagas get this long to finish before they are cancelled (a cancelled
# one stays ``provisioning`` and the reconciler of another or the next core resumes it).
DRAIN_SECONDS = 20.0
SAGA_CONCURRENCY = 4
# The first step of a restore: a tenant planned with it is a restore, never provisioned afresh.
RESTORE_STEP = "restore_schema"


def _check(tenant: Tenant, to: State) -> None:
    if to not in TRANSITIONS[tenant.state]:
        raise IllegalTransitionError(
            f"a tenant in state {tenant.state.value} cannot become {to.value}",
            details={"state": tenant.state.value, "requested": to.value},
        )


class TenantService(TenantSettings):
    def __init__(
        self,
        db: Database,
        steps: Sequence[ProvisioningStep] = (),
        *,
        redis_url: str | None = None,
        saga_concurrency: int = SAGA_CONCURRENCY,
    ) -> None:
        self.db = db
        self.schema_step = saga.SchemaStep(db)
        self.steps: list[ProvisioningStep] = [self.schema_step, *steps]
        self.cache = TenantCache(self._load, redis_url=redis_url)
        # Sagas beyond this many wait their turn instead of contending for the pool (ADR 0175).
        self._saga_slots = asyncio.Semaphore(saga_concurrency)
        self._jobs: set[asyncio.Task[None]] = set()

    @property
    def deletion_steps(self) -> list[ProvisioningStep]:
        return [saga.OutboxPurgeStep(self.db), self.schema_step, *reversed(self.steps[1:])]

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        if self._jobs:
            _, pending = await asyncio.wait(set(self._jobs), timeout=DRAIN_SECONDS)
            for job in pending:
                job.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.cache.stop()

    async def _load(self, tenant_id: UUID) -> Tenant | None:
        async with self.db.session() as session:
            return await repository.get(session, tenant_id)

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, key: UUID | str) -> Tenant:
        """By id, or by slug when ``key`` is not a UUID (deleted tenants stay on record).
        Unknown and malformed keys give the same 404."""
        async with self.db.session() as session:
            tenant = await self._find(session, key)
        if tenant is None:
            raise TenantNotFoundError("no such tenant")
        return tenant

    async def _find(
        self, session: AsyncSession, key: UUID | str, lock: bool = False
    ) -> Tenant | None:
        if isinstance(key, UUID):
            return await repository.get(session, key, lock=lock)
        try:
            return await repository.get(session, UUID(key), lock=lock)
        except ValueError:
            pass
        try:
            slug = validate_slug(key)
        except PlexicaError:
            return None
        found = await repository.get_by_slug(session, slug)
        if found is not None and lock:
            return await repository.get(session, found.id, lock=True)
        return found

    async def list_tenants(
        self, *, state: State | None = None, after: str | None = None, limit: int = 50
    ) -> TenantPage:
        async with self.db.session() as session:
            items = await repository.list_page(session, state=state, after=after, limit=limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return TenantPage(items=items, next=items[-1].slug if more else None)

    async def steps_of(self, key: UUID | str) -> TenantSteps:
        tenant = await self.get(key)
        async with self.db.session() as session:
            steps = await repository.steps(session, tenant.id)
            history = await repository.history(session, tenant.id)
        return TenantSteps(tenant_id=tenant.id, state=tenant.state, steps=steps, history=history)

    async def provisioning_status(self, key: UUID | str) -> ProvisioningStatus:
        tenant = await self.get(key)
        async with self.db.session() as session:
            recorded = await repository.steps(session, tenant.id)
        steps = [s for s in recorded if s.phase is Phase.PROVISION]
        running = next((s.name for s in steps if s.status is StepStatus.RUNNING), None)
        # The step that failed keeps its error once undone; a failed undo is marked "undo: ...".
        failed = next((s.name for s in steps if s.error and not s.error.startswith("undo: ")), None)
        return ProvisioningStatus(
            tenant_id=tenant.id, slug=tenant.slug, name=tenant.name, state=tenant.state,
            finished=tenant.state is not State.PROVISIONING, current=running, failed_step=failed,
            failure_reason=tenant.failure_reason, steps=steps,
            done=sum(s.status is StepStatus.DONE for s in steps), total=len(steps),
        )  # fmt: skip

    # -- provisioning ----------------------------------------------------------------------------

    def _checked(self, data: TenantCreate) -> tuple[str, str]:
        slug = validate_slug(data.slug)
        validate_email(data.admin_email)
        name = data.name.strip()
        if not name:
            raise PlexicaError("name must not be blank", code="invalid_name", status=422)
        return slug, name

    async def _insert(
        self,
        tenant_id: UUID,
        slug: str,
        name: str,
        admin_email: str,
        *,
        steps: Sequence[ProvisioningStep] | None = None,
        reason: str | None = None,
        actor: str = PLATFORM,
    ) -> Tenant:
        names = [s.name for s in (self.steps if steps is None else steps)]
        try:
            async with self.db.session() as session:
                tenant = await repository.insert_tenant(
                    session, tenant_id, slug, name, admin_email, reason=reason
                )
                await repository.plan_steps(session, tenant.id, Phase.PROVISION, names)
                made = {"slug": slug, "name": name, "admin_email": admin_email, "reason": reason}
                await lifecycle_audit.record(session, actor, "tenant.created", tenant, after=made)
        except repository.SlugTakenError:
            raise TenantExistsError(
                f"a tenant with the slug {slug!r} already exists", details={"slug": slug}
            ) from None
        log.info("tenant_provisioning", tenant_id=str(tenant.id), slug=slug)
        return tenant

    async def create(self, data: TenantCreate, *, actor: str = PLATFORM) -> Tenant:
        slug, name = self._checked(data)
        tenant_id = uuid.uuid4()
        async with self._saga_lock(tenant_id):
            tenant = await self._insert(tenant_id, slug, name, data.admin_email, actor=actor)
            return await self._provision(tenant)

    async def start_create(self, data: TenantCreate, *, actor: str = PLATFORM) -> Tenant:
        """Records the tenant and its planned steps, then runs the saga in the background under
        the tenant's saga lock (taken here, so no retry can enter it first). The answer is the
        tenant in ``provisioning``; ``provisioning_status`` follows the steps (ADR 0095)."""
        slug, name = self._checked(data)
        tenant_id = uuid.uuid4()
        lock = AsyncExitStack()
        await lock.enter_async_context(self._saga_lock(tenant_id))
        try:
            tenant = await self._insert(tenant_id, slug, name, data.admin_email, actor=actor)
        except BaseException:
            await lock.aclose()
            raise
        self._spawn(tenant, lock)
        return tenant

    def _spawn(self, tenant: Tenant, lock: AsyncExitStack) -> None:
        job = asyncio.create_task(self._provision_in_background(tenant, lock))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _provision_in_background(self, tenant: Tenant, lock: AsyncExitStack) -> None:
        async with lock:
            try:
                await self._provision(tenant)
            except ProvisioningFailedError:
                pass  # recorded: the tenant is failed, its steps say where and why
            except Exception:
                log.exception("tenant_provisioning_crashed", tenant_id=str(tenant.id))

    @asynccontextmanager
    async def _saga_lock(self, tenant_id: UUID) -> AsyncIterator[None]:
        """One saga at a time per tenant. A tenant left ``provisioning`` or ``pending_deletion``
        with nobody holding this lock was orphaned by a crash and may be resumed."""
        async with self.db.unpooled_connection() as conn:
            locked = await repository.try_saga_lock(conn, tenant_id)
            await conn.commit()
            if not locked:
                raise TenantBusyError(
                    "another provisioning or deletion of this tenant is running",
                    details={"tenant_id": str(tenant_id)},
                )
            try:
                # Locked while it waits for a slot: the reconciler sees it as alive, not orphaned.
                async with self._saga_slots:
                    yield
            finally:
                await repository.saga_unlock(conn, tenant_id)
                await conn.commit()

    async def retry(self, key: UUID | str, *, actor: str = PLATFORM) -> Tenant:
        """Run the saga again for a failed tenant, or resume one a crash left provisioning;
        every step is idempotent."""
        async with self._saga_lock((await self.get(key)).id):
            tenant = await self._reopen(key, actor)
            return await self._provision(tenant)

    async def start_retry(self, key: UUID | str, *, actor: str = PLATFORM) -> Tenant:
        """``retry`` with the saga in the background, like ``start_create``."""
        lock = AsyncExitStack()
        await lock.enter_async_context(self._saga_lock((await self.get(key)).id))
        try:
            tenant = await self._reopen(key, actor)
        except BaseException:
            await lock.aclose()
            raise
        self._spawn(tenant, lock)
        return tenant

    async def resume(self, tenant_id: UUID) -> Tenant:
        """Finish what a crash left half-done (the reconciler's job, ADR 0140): a tenant still
        ``provisioning`` runs the saga again (every step is idempotent; a failing step rolls it
        back to ``failed``), one ``pending_deletion`` resumes its deletion. The state is read
        under the saga lock, so work finished meanwhile is left alone. Raises TenantBusyError
        while another process holds the lock (it is alive and doing the work)."""
        async with self._saga_lock(tenant_id):
            tenant = await self.get(tenant_id)
            try:
                if tenant.state is State.PROVISIONING and await self._is_restore(tenant_id):
                    return await self._interrupted_restore(tenant)
                if tenant.state is State.PROVISIONING:
                    log.info("tenant_resumed", tenant_id=str(tenant_id), phase="provision")
                    return await self._provision(await self._reopen(tenant_id, PLATFORM))
                if tenant.state is State.PENDING_DELETION:
                    log.info("tenant_resumed", tenant_id=str(tenant_id), phase="delete")
                    return await self._delete(tenant_id)
            except (ProvisioningFailedError, DeletionIncompleteError):
                return await self.get(tenant_id)  # recorded on the tenant and its steps
            return tenant

    # -- restore (ADR 0171) ------------------------------------------------------------------------

    async def restore(
        self, data: TenantCreate, steps: Sequence[ProvisioningStep], origin: str
    ) -> Tenant:
        """A new tenant made by ``steps`` (a backup's data) instead of the provisioning steps,
        under the saga lock; ``origin`` names the backup in the tenant's history. A step that
        fails undoes the ones before it and the tenant is deleted: nothing half-made stays."""
        slug, name = self._checked(data)
        tenant_id = uuid.uuid4()
        async with self._saga_lock(tenant_id):
            tenant = await self._insert(
                tenant_id, slug, name, data.admin_email, steps=steps, reason=origin
            )
            try:
                return await self._provision(tenant, steps)
            except ProvisioningFailedError as exc:
                failed = await self.get(tenant_id)
                with contextlib.suppress(PlexicaError):
                    await self._delete(tenant_id)
                raise ProvisioningFailedError(
                    f"restore failed and was rolled back: {failed.failure_reason}",
                    code="restore_failed",
                    details=exc.details,
                ) from None

    async def origin(self, tenant_id: UUID) -> str | None:
        """The reason recorded when the tenant was made (a restore's backup)."""
        async with self.db.session() as session:
            history = await repository.history(session, tenant_id)
        return history[0].reason if history else None

    async def _is_restore(self, tenant_id: UUID) -> bool:
        async with self.db.session() as session:
            recorded = await repository.steps(session, tenant_id)
        return any(s.phase is Phase.PROVISION and s.name == RESTORE_STEP for s in recorded)

    async def _interrupted_restore(self, tenant: Tenant) -> Tenant:
        """A restore a crash interrupted is not provisioned as a new tenant: it is left failed
        (deletable; running the restore again deletes it first)."""
        reason = "restore interrupted; run it again or delete the tenant"
        async with self.db.session() as session:
            failed = await repository.set_state(
                session, tenant.id, State.PROVISIONING, State.FAILED, failure_reason=reason
            )
            await events.emit(session, events.FAILED, failed)
        await self.cache.invalidate(tenant.id)
        log.warning("tenant_restore_interrupted", tenant_id=str(tenant.id), slug=tenant.slug)
        return failed

    async def _reopen(self, key: UUID | str, actor: str) -> Tenant:
        async with self.db.session() as session:
            tenant = await self._locked(session, key)
        if await self._is_restore(tenant.id):
            raise IllegalTransitionError(
                "a failed restore is not provisioned afresh: run the restore again or delete it",
                details={"state": tenant.state.value},
            )
        async with self.db.session() as session:
            tenant = await self._locked(session, key)
            if tenant.state is not State.PROVISIONING:
                _check(tenant, State.PROVISIONING)
                tenant = await repository.set_state(
                    session, tenant.id, tenant.state, State.PROVISIONING, reason="retry"
                )
            await repository.plan_steps(
                session, tenant.id, Phase.PROVISION, [s.name for s in self.steps]
            )
            await repository.reset_steps(session, tenant.id, Phase.PROVISION)
            await lifecycle_audit.record(session, actor, "tenant.provisioning_retried", tenant)
        return tenant

    async def _provision(
        self, tenant: Tenant, steps: Sequence[ProvisioningStep] | None = None
    ) -> Tenant:
        began = time.perf_counter()
        try:
            await saga.provision(self.db, tenant.ref, self.steps if steps is None else steps)
        except saga.StepFailedError as exc:
            PROVISIONING_SECONDS.labels("failed").observe(time.perf_counter() - began)
            async with self.db.session() as session:
                failed = await repository.set_state(
                    session, tenant.id, State.PROVISIONING, State.FAILED, failure_reason=exc.reason
                )
                await events.emit(session, events.FAILED, failed)
            await self.cache.invalidate(tenant.id)
            raise ProvisioningFailedError(
                f"provisioning failed at step {exc.step}; the tenant is left failed",
                details={"tenant": failed.model_dump(mode="json")},
            ) from None
        async with self.db.session() as session:
            active = await repository.set_state(
                session, tenant.id, State.PROVISIONING, State.ACTIVE
            )
            await events.emit(session, events.PROVISIONED, active)
        await self.cache.invalidate(tenant.id)
        PROVISIONING_SECONDS.labels("active").observe(time.perf_counter() - began)
        log.info("tenant_provisioned", tenant_id=str(tenant.id), slug=tenant.slug)
        return active

    # -- lifecycle -------------------------------------------------------------------------------

    async def _locked(self, session: AsyncSession, key: UUID | str) -> Tenant:
        tenant = await self._find(session, key, lock=True)
        if tenant is None:
            raise TenantNotFoundError("no such tenant")
        return tenant

    async def _transition(self, key: UUID | str, to: State, event: str, actor: str) -> Tenant:
        toggled: list[tuple[SuspendableStep, TenantRef]] = []
        suspend = to is State.SUSPENDED
        try:
            async with self.db.session() as session:
                tenant = await self._locked(session, key)
                _check(tenant, to)
                changed = await repository.set_state(session, tenant.id, tenant.state, to)
                await events.emit(session, event, changed)
                action = "tenant.suspended" if suspend else "tenant.reactivated"
                await lifecycle_audit.record(
                    session, actor, action, changed, before={"state": tenant.state.value}
                )
                # Inside the transaction: a provider that fails keeps the tenant as it was.
                for step in self.steps:
                    if isinstance(step, SuspendableStep):
                        await (step.suspend if suspend else step.resume)(tenant.ref)
                        toggled.append((step, tenant.ref))
        except BaseException:
            for done, ref in reversed(toggled):
                try:
                    await (done.resume if suspend else done.suspend)(ref)
                except Exception:  # the original error is the one to raise
                    log.exception("tenant_state_compensation_failed", tenant_id=str(ref.id))
            raise
        await self.cache.invalidate(tenant.id)
        log.info("tenant_state_changed", tenant_id=str(tenant.id), state=to.value)
        return changed

    async def suspend(self, key: UUID | str, *, actor: str = PLATFORM) -> Tenant:
        return await self._transition(key, State.SUSPENDED, events.SUSPENDED, actor)

    async def reactivate(self, key: UUID | str, *, actor: str = PLATFORM) -> Tenant:
        return await self._transition(key, State.ACTIVE, events.REACTIVATED, actor)

    async def delete(self, key: UUID | str, *, actor: str = PLATFORM) -> Tenant:
        """Forward-only: once pending deletion, calling again resumes where it stopped."""
        async with self._saga_lock((await self.get(key)).id):
            return await self._delete(key, actor)

    async def _delete(self, key: UUID | str, actor: str = PLATFORM) -> Tenant:
        names = [s.name for s in self.deletion_steps]
        async with self.db.session() as session:
            tenant = await self._locked(session, key)
            if tenant.state is not State.PENDING_DELETION:
                _check(tenant, State.PENDING_DELETION)
                before = tenant.state.value
                tenant = await repository.set_state(
                    session, tenant.id, tenant.state, State.PENDING_DELETION
                )
                await repository.plan_steps(session, tenant.id, Phase.DELETE, names)
                await lifecycle_audit.record(session, actor, "tenant.deletion_started", tenant,
                             before={"state": before})  # fmt: skip
            done = {
                s.name
                for s in await repository.steps(session, tenant.id)
                if s.phase is Phase.DELETE and s.status is StepStatus.DONE
            }
        await self.cache.invalidate(tenant.id)
        try:
            await saga.delete(self.db, tenant.ref, self.deletion_steps, done)
        except saga.StepFailedError as exc:
            async with self.db.session() as session:
                await repository.set_failure_reason(session, tenant.id, exc.reason)
            raise DeletionIncompleteError(
                f"{exc.reason}; the tenant stays pending_deletion, delete it again to resume",
                details={"tenant_id": str(tenant.id), "step": exc.step},
            ) from None
        async with self.db.session() as session:
            deleted = await repository.set_state(
                session, tenant.id, State.PENDING_DELETION, State.DELETED
            )
            await events.emit(session, events.DELETED, deleted)
            await lifecycle_audit.record(session, actor, "tenant.deleted", deleted)
        await self.cache.invalidate(tenant.id)
        log.info("tenant_deleted", tenant_id=str(tenant.id), slug=tenant.slug)
        return deleted


async def all_tenants(session: AsyncSession) -> list[Tenant]:
    """Every tenant, whatever its state, oldest first."""
    return await repository.fleet(session, list(State))
