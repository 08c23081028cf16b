"""The plugins domain's service: the per-tenant installation lifecycle (``Installer``, under a
lease per tenant and plugin, ADR 0170) and the tenancy saga's step. The catalog, the reads of
installations, the plugin's login and the readiness probe have their own modules; their public
names are imported here, where the rest of the platform calls the domain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from prometheus_client import Counter

from plexica.audit import service as audit_service
from plexica.events import service as events_service
from plexica.events.events import CoreEvent
from plexica.kit.provisioning import TenantRef
from plexica.plugins.apply import VersionApplier, as_plexica
from plexica.plugins.catalog import (
    check_compatibility,
    list_versions,
    pick_version,
    register,
    set_status,
    upstream_timeouts,
)
from plexica.plugins.installations import (
    get_installation,
    installation_counts,
    is_active,
    list_installations,
    permission_resolver,
    permissions_for,
    routed_ids,
    settings_change,
    subscribers,
    tenant_by_slug,
    ui_contributions,
    validate_settings,
)
from plexica.plugins.logins import ensure_login, login_membership, rotate_login
from plexica.plugins.readiness import HttpReadinessProbe, ReadinessProbe
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import tenant_objects as objects_repo
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import (
    InstallationNotFoundError,
    InstallationOut,
    InstallBusyError,
    InstallStatus,
    InvalidStateError,
)
from plexica.plugins.tenant_catalog import tenant_catalog
from plexica_sdk.db import plugin_role
from plexica_sdk.errors import PlexicaError
from plexica_sdk.manifest import stored_manifest
from plexica_sdk.semver import Version

__all__ = [
    "DefaultPluginsStep",
    "HttpReadinessProbe",
    "Installer",
    "ReadinessProbe",
    "check_compatibility",
    "ensure_login",
    "get_installation",
    "installation_counts",
    "is_active",
    "list_installations",
    "list_versions",
    "permission_resolver",
    "permissions_for",
    "register",
    "rotate_login",
    "routed_ids",
    "set_status",
    "subscribers",
    "tenant_by_slug",
    "tenant_catalog",
    "ui_contributions",
    "upstream_timeouts",
    "validate_settings",
]

log = structlog.get_logger("plexica.plugins")
# An installation in one of these states is not installed again.
BUSY = (InstallStatus.ACTIVE, InstallStatus.DISABLED, InstallStatus.INSTALLING)

RECOVERED = Counter(
    "plexica_plugin_recovered_total",
    "Plugin installs and upgrades a crash interrupted, undone by the reconciler.",
    ["operation"],
)


class Installer(VersionApplier):
    """Runs install, upgrade, restore, enable/disable and uninstall for one deployment."""

    @asynccontextmanager
    async def _lease(self, tenant_id: UUID, plugin_id: str) -> AsyncIterator[None]:
        """One install, upgrade, uninstall or recovery at a time per tenant and plugin (ADR
        0170): a session advisory lock on a connection of its own, which PostgreSQL frees when
        the holder dies. An installation left ``installing`` or with a ``pending_version`` and
        nobody holding its lease was interrupted by a crash. The lease's connection is not
        from the pool, which the operation's own sessions need."""
        async with self.db.unpooled_connection() as conn:
            locked = await installs_repo.try_lease(conn, tenant_id, plugin_id)
            await conn.commit()
            if not locked:
                raise InstallBusyError(
                    f"another operation on plugin {plugin_id} in this tenant is running",
                    details={"tenant_id": str(tenant_id), "plugin_id": plugin_id},
                )
            try:
                yield
            finally:
                await installs_repo.release_lease(conn, tenant_id, plugin_id)
                await conn.commit()

    async def install(
        self,
        tenant: TenantRef,
        plugin_id: str,
        version: str | None = None,
        settings: dict[str, Any] | None = None,
        *,
        actor: str = "platform",
    ) -> InstallationOut:
        """Install, or restore retained data; what a crash left of an earlier attempt is undone
        first. ``actor`` is who the audit log names."""
        async with self._lease(tenant.id, plugin_id):
            await self._recover(tenant, plugin_id)
            return await self._install(tenant, plugin_id, version, settings or {}, actor)

    async def _install(
        self,
        tenant: TenantRef,
        plugin_id: str,
        version: str | None,
        settings: dict[str, Any],
        actor: str,
    ) -> InstallationOut:
        role = plugin_role(plugin_id, tenant.id)
        async with self.db.session() as s:
            manifest, migrations = await pick_version(s, plugin_id, version)
            validate_settings(manifest, settings)
            if not await objects_repo.schema_exists(s, tenant.schema):
                raise InstallationNotFoundError("no such tenant")
            current = await installs_repo.get_installation(s, tenant.id, plugin_id, lock=True)
            if current and current["status"] in BUSY:
                raise InvalidStateError(
                    f"plugin {plugin_id} is already {current['status']} in this tenant"
                )
            restoring = bool(current and current["status"] == InstallStatus.UNINSTALLED)
            if restoring and current and Version.parse(current["version"]) > manifest.semver:
                raise InvalidStateError(
                    f"retained data is from {plugin_id} {current['version']}, newer than"
                    f" {manifest.version}"
                )
            # No row to lock yet for a first install: the insert decides between parallel ones.
            claimed = await installs_repo.upsert_installation(
                s,
                tenant_id=tenant.id,
                tenant_slug=tenant.slug,
                plugin_id=plugin_id,
                version=current["version"] if current and restoring else manifest.version,
                status=InstallStatus.INSTALLING,
                db_role=role,
                settings=settings,
                unless=BUSY,
            )
            if not claimed:
                raise InvalidStateError(f"plugin {plugin_id} is already being installed here")
        try:
            await self._ensure_login(plugin_id)
            await self._apply(
                tenant, manifest, migrations, settings, "install", restore=restoring, actor=actor
            )
        except Exception as exc:  # noqa: BLE001 - any failure is undone and recorded, then re-raised
            await self._install_failed(tenant, plugin_id, exc, restoring=restoring)
            raise as_plexica(exc) from None
        return await self._out(tenant.id, plugin_id)

    async def upgrade(
        self,
        tenant: TenantRef,
        plugin_id: str,
        version: str | None = None,
        *,
        actor: str = "platform",
    ) -> InstallationOut:
        async with self._lease(tenant.id, plugin_id):
            await self._recover(tenant, plugin_id)
            return await self._upgrade(tenant, plugin_id, version, actor)

    async def _upgrade(
        self, tenant: TenantRef, plugin_id: str, version: str | None, actor: str
    ) -> InstallationOut:
        async with self.db.session() as s:
            current = await installs_repo.get_installation(s, tenant.id, plugin_id)
            if current is None or current["status"] not in (
                InstallStatus.ACTIVE,
                InstallStatus.DISABLED,
            ):
                raise InvalidStateError(f"plugin {plugin_id} is not installed in this tenant")
            manifest, migrations = await pick_version(s, plugin_id, version)
            if manifest.semver <= Version.parse(current["version"]):
                raise InvalidStateError(
                    f"{plugin_id} {current['version']} is installed;"
                    f" {manifest.version} is not newer"
                )
            validate_settings(manifest, current["settings"] or {})
        try:
            await self._ensure_login(plugin_id)
            await self._apply(
                tenant, manifest, migrations, current["settings"] or {}, "upgrade",
                keep_status=InstallStatus(current["status"]), actor=actor,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any failure is undone and recorded, then re-raised
            await self._upgrade_failed(tenant, plugin_id, exc, manifest.version)
            raise as_plexica(exc) from None
        return await self._out(tenant.id, plugin_id)

    async def recover(self, tenant: TenantRef, plugin_id: str) -> bool:
        """Finish what a crash left between the steps of an install, restore or upgrade: an
        installation still ``installing``, or with a ``pending_version``, is undone as if it
        had failed. Returns whether there was anything to undo; raises InstallBusyError while
        the operation is alive somewhere (it holds the lease)."""
        async with self._lease(tenant.id, plugin_id):
            return await self._recover(tenant, plugin_id)

    async def reconcile(self) -> list[tuple[UUID, str]]:
        """Undo every install, restore or upgrade a crash interrupted (the reconciler's pass,
        ADR 0170); the (tenant, plugin) pairs undone. Those whose lease is held are alive."""
        async with self.db.session() as s:
            rows = await installs_repo.interrupted_installations(s)
        undone = []
        for row in rows:
            ref = TenantRef(row["tenant_id"], row["tenant_slug"], row["tenant_slug"], "")
            try:
                if not await self.recover(ref, row["plugin_id"]):
                    continue
            except InstallBusyError:
                continue
            RECOVERED.labels(
                "upgrade" if row["status"] != InstallStatus.INSTALLING else "install"
            ).inc()
            log.info(
                "plugin_reconciled",
                plugin=row["plugin_id"],
                tenant_id=str(row["tenant_id"]),
                was=row["status"],
                pending_version=row["pending_version"],
            )
            undone.append((row["tenant_id"], row["plugin_id"]))
        return undone

    async def _recover(self, tenant: TenantRef, plugin_id: str) -> bool:
        async with self.db.session() as s:
            row = await installs_repo.get_installation(s, tenant.id, plugin_id)
        if row is None:
            return False
        interrupted = InterruptedError("interrupted; run the operation again")
        if row["status"] == InstallStatus.INSTALLING:
            restoring = row["retain_until"] is not None
            await self._install_failed(tenant, plugin_id, interrupted, restoring=restoring)
            return True
        if row["pending_version"] is not None:
            await self._upgrade_failed(tenant, plugin_id, interrupted, row["pending_version"])
            return True
        return False

    async def _out(self, tenant_id: UUID, plugin_id: str) -> InstallationOut:
        async with self.db.session() as s:
            return await get_installation(s, tenant_id, plugin_id)

    async def set_enabled(
        self, tenant: TenantRef, plugin_id: str, enabled: bool, *, actor: str = "platform"
    ) -> InstallationOut:
        async with self.db.session() as s:
            row = await installs_repo.get_installation(s, tenant.id, plugin_id, lock=True)
            want, source = (
                (InstallStatus.ACTIVE, InstallStatus.DISABLED)
                if enabled
                else (InstallStatus.DISABLED, InstallStatus.ACTIVE)
            )
            if row is None or row["status"] not in (want, source):
                raise InvalidStateError(f"plugin {plugin_id} is not installed in this tenant")
            if row["status"] != want:
                await installs_repo.update_installation(
                    s, tenant.id, plugin_id, status=want, reason=None
                )
                await login_membership(s, plugin_id, row["db_role"], active=enabled)
                await events_service.set_plugin_active(s, plugin_id, tenant.id, enabled)
                event = CoreEvent.PLUGIN_ENABLED if enabled else CoreEvent.PLUGIN_DISABLED
                await events_service.publish(
                    s,
                    event,
                    {"plugin_id": plugin_id},
                    tenant_id=tenant.id,
                    subject=f"plugins/{plugin_id}",
                )
                await audit_service.record(
                    s, actor, "plugin." + ("enabled" if enabled else "disabled"), tenant.id,
                    f"plugin:{plugin_id}",
                )  # fmt: skip
                log.info(
                    "plugin_" + ("enabled" if enabled else "disabled"),
                    plugin=plugin_id,
                    tenant_id=str(tenant.id),
                )
        return await self._out(tenant.id, plugin_id)

    async def uninstall(
        self, tenant: TenantRef, plugin_id: str, *, purge: bool = False, actor: str = "platform"
    ) -> InstallationOut | None:
        """Keep the data for the manifest's retention window, or drop it all with ``purge``.
        One transaction: a crash in it leaves the installation as it was."""
        async with self._lease(tenant.id, plugin_id):
            return await self._uninstall(tenant, plugin_id, purge=purge, actor=actor)

    async def _uninstall(
        self, tenant: TenantRef, plugin_id: str, *, purge: bool, actor: str
    ) -> InstallationOut | None:
        async with self.db.session() as s:
            row = await installs_repo.get_installation(s, tenant.id, plugin_id, lock=True)
            if row is None:
                raise InstallationNotFoundError(
                    f"plugin {plugin_id} is not installed in this tenant"
                )
            await events_service.remove_plugin(s, plugin_id, tenant.id)
            if row["status"] in (InstallStatus.ACTIVE, InstallStatus.DISABLED):
                await events_service.publish(
                    s,
                    CoreEvent.PLUGIN_UNINSTALLED,
                    {"plugin_id": plugin_id, "purged": purge},
                    tenant_id=tenant.id,
                    subject=f"plugins/{plugin_id}",
                )
                await audit_service.record(
                    s, actor, "plugin.uninstalled", tenant.id, f"plugin:{plugin_id}",
                    after={"purged": purge},
                )  # fmt: skip
            if purge or row["status"] == InstallStatus.FAILED:
                await objects_repo.drop_plugin_objects(s, tenant.schema, row["db_role"], plugin_id)
                await installs_repo.delete_installation(s, tenant.id, plugin_id)
                log.info("plugin_purged", plugin=plugin_id, tenant_id=str(tenant.id))
                return None
            if row["status"] not in (InstallStatus.ACTIVE, InstallStatus.DISABLED):
                raise InvalidStateError(f"plugin {plugin_id} is {row['status']} in this tenant")
            version = await versions_repo.get_version(s, plugin_id, row["version"])
            days = stored_manifest(version["manifest"]).data_retention_days if version else 30
            await login_membership(s, plugin_id, row["db_role"], active=False)
            await installs_repo.update_installation(
                s,
                tenant.id,
                plugin_id,
                status=InstallStatus.UNINSTALLED,
                retain_until=datetime.now(UTC) + timedelta(days=days),
                reason=None,
            )
        return await self._out(tenant.id, plugin_id)

    async def update_settings(
        self,
        tenant: TenantRef,
        plugin_id: str,
        settings: dict[str, Any],
        *,
        actor: str = "platform",
    ) -> InstallationOut:
        """Replace the settings; the audit entry commits with them, secrets named, not shown."""
        async with self.db.session() as s:
            row = await installs_repo.get_installation(s, tenant.id, plugin_id, lock=True)
            if row is None or row["status"] not in (InstallStatus.ACTIVE, InstallStatus.DISABLED):
                raise InstallationNotFoundError(
                    f"plugin {plugin_id} is not installed in this tenant"
                )
            version = await versions_repo.get_version(s, plugin_id, row["version"])
            assert version is not None
            manifest = stored_manifest(version["manifest"])
            validate_settings(manifest, settings)
            await installs_repo.update_installation(s, tenant.id, plugin_id, settings=settings)
            before, after = settings_change(manifest, row["settings"] or {}, settings)
            await audit_service.record(
                s, actor, "plugin.settings_updated", tenant.id, f"plugin:{plugin_id}",
                before=before, after=after,
            )  # fmt: skip
        return await self._out(tenant.id, plugin_id)

    async def upgrade_fleet(
        self,
        plugin_id: str,
        version: str | None = None,
        *,
        concurrency: int = 4,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> dict[str, str]:
        """Upgrade every tenant that has the plugin active or disabled, a few at a time.

        Resumable: tenants already on the target version are skipped. Each tenant's upgrade is
        its own transaction, so one failure leaves the others upgraded; the result maps each
        tenant id to ``upgraded``, ``current`` or the failure's reason. ``progress(done,
        total)`` follows the tenants as they finish."""
        async with self.db.session() as s:
            target, _ = await pick_version(s, plugin_id, version)
            rows = [
                r
                for r in await installs_repo.list_installations(s)
                if r["plugin_id"] == plugin_id
                and r["status"] in (InstallStatus.ACTIVE, InstallStatus.DISABLED)
            ]
        gate = asyncio.Semaphore(concurrency)
        results: dict[str, str] = {}

        async def one(row: dict[str, Any]) -> None:
            key = str(row["tenant_id"])
            if Version.parse(row["version"]) >= target.semver:
                results[key] = "current"
            else:
                ref = TenantRef(row["tenant_id"], row["tenant_slug"], row["tenant_slug"], "")
                async with gate:
                    try:
                        await self.upgrade(ref, plugin_id, target.version)
                        results[key] = "upgraded"
                    except PlexicaError as exc:
                        results[key] = exc.message
            if progress is not None:
                progress(len(results), len(rows))

        await asyncio.gather(*(one(r) for r in rows))
        return results

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Drop the data of uninstalled plugins whose retention window has passed."""
        async with self.db.session() as s:
            rows = await installs_repo.expired_installations(s, now or datetime.now(UTC))
        for row in rows:
            ref = TenantRef(row["tenant_id"], row["tenant_slug"], row["tenant_slug"], "")
            await self.uninstall(ref, row["plugin_id"], purge=True)
        return len(rows)

    async def purge_tenant(self, tenant: TenantRef) -> None:
        async with self.db.session() as s:
            rows = await installs_repo.list_installations(s, tenant.id)
        for row in rows:
            await self.uninstall(tenant, row["plugin_id"], purge=True)


class DefaultPluginsStep:
    """Tenancy saga step: install the configured default plugins into a new tenant."""

    name = "default_plugins"

    def __init__(self, installer: Installer, plugin_ids: Iterable[str]) -> None:
        self.installer = installer
        self.plugin_ids = list(plugin_ids)

    async def apply(self, tenant: TenantRef) -> None:
        for plugin_id in self.plugin_ids:
            async with self.installer.db.session() as s:
                if await is_active(s, tenant.id, plugin_id):
                    continue
            await self.installer.install(tenant, plugin_id)

    async def undo(self, tenant: TenantRef) -> None:
        await self.installer.purge_tenant(tenant)

    async def purge(self, tenant: TenantRef) -> None:
        await self.installer.purge_tenant(tenant)
