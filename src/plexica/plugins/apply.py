"""Applying one plugin version to one tenant, and undoing it.

Install, upgrade and restore run as a job with their own transactions (``Database.session``):
the installation row is marked ``installing`` first, then the role, grants, migrations, functions
and the switch to ``active`` happen in ONE transaction that commits only after the plugin answers
ready. PostgreSQL DDL and roles are transactional, so any failure rolls back every object; the
reason is then written to the installation in a separate transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from plexica import __version__
from plexica.audit import service as audit_service
from plexica.events import service as events_service
from plexica.events.events import CoreEvent
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.plugins.catalog import catalog_manifests, check_compatibility, unmet_dependencies
from plexica.plugins.logins import ensure_login, login_membership, new_password
from plexica.plugins.migrator import migrate_as_role
from plexica.plugins.readiness import ReadinessProbe
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import tenant_objects as objects_repo
from plexica.plugins.schemas import (
    IncompatibleError,
    InstallFailedError,
    InstallStatus,
    MigrationFile,
    MigrationRefusedError,
)
from plexica_sdk.db import plugin_role
from plexica_sdk.errors import PlexicaError
from plexica_sdk.manifest import Manifest

log = structlog.get_logger("plexica.plugins")
AUDITED = {"install": "plugin.installed", "upgrade": "plugin.upgraded"}
INSTALL_SECONDS = Histogram(
    "plexica_plugin_install_duration_seconds",
    "Plugin install/upgrade duration by plugin and outcome.",
    ["plugin", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


class VersionApplier:
    """The steps of an install, upgrade or restore in one tenant, and their compensation; the
    ``Installer`` runs them under its lease."""

    def __init__(
        self,
        db: Database,
        probe: ReadinessProbe,
        *,
        core_version: str = __version__,
        migration_timeout: float = 60.0,
    ) -> None:
        self.db = db
        self.probe = probe
        self.core_version = core_version
        # The longest a plugin's migrations may run (and hold their locks) in one tenant.
        self.migration_timeout = migration_timeout

    async def _apply(
        self,
        tenant: TenantRef,
        manifest: Manifest,
        migrations: list[MigrationFile],
        settings: dict[str, Any],
        operation: str,
        *,
        restore: bool = False,
        keep_status: InstallStatus = InstallStatus.ACTIVE,
        actor: str = "platform",
    ) -> None:
        role = plugin_role(manifest.id, tenant.id)
        started = asyncio.get_running_loop().time()
        outcome = "failed"
        password = new_password()
        try:
            # 1. The platform prepares: the role may log in and create in the tenant schema,
            # the platform's functions exist, and the installation says what is in progress.
            async with self.db.session() as s:
                current = await installs_repo.get_installation(s, tenant.id, manifest.id, lock=True)
                applied = list(current["applied_migrations"] or []) if current else []
                # Compatibility is checked again here: the catalog may have changed since
                # registration, and dependencies are per tenant.
                check_compatibility(manifest, await catalog_manifests(s), self.core_version)
                await _dependencies_installed(s, manifest, tenant.id)
                await objects_repo.prepare_migration_role(
                    s,
                    role,
                    tenant.schema,
                    password,
                    statement_timeout_ms=int(self.migration_timeout * 1000),
                )
                await objects_repo.create_functions(s, tenant.schema, role, manifest.id, tenant.id)
                await installs_repo.update_installation(
                    s, tenant.id, manifest.id, pending_version=manifest.version
                )
            # 2. The migrations run logged in as the role, in its own transaction, which
            # commits only if what the role owns then passes the check and the plugin is ready.
            pending = [m for m in migrations if m.name not in applied]
            applied += await migrate_as_role(
                platform_url=self.db.engine.url,
                role=role,
                password=password,
                schema=tenant.schema,
                prefix=manifest.table_prefix,
                migrations=pending,
                time_limit=self.migration_timeout,
                before_commit=lambda: self.probe(manifest, tenant),
            )
            # 3. The platform checks again what the role owns, takes the login and CREATE
            # back, and switches the installation on.
            async with self.db.session() as s:
                outside = await objects_repo.foreign_objects(
                    s, role, tenant.schema, manifest.table_prefix
                )
                if outside:
                    raise MigrationRefusedError(
                        f"migrations created objects outside the prefix {manifest.table_prefix!r}:"
                        f" {', '.join(sorted(outside))}",
                        details={"objects": sorted(outside)},
                    )
                await objects_repo.seal_role(s, role, tenant.schema)
                await login_membership(
                    s, manifest.id, role, active=keep_status == InstallStatus.ACTIVE
                )
                await installs_repo.update_installation(
                    s,
                    tenant.id,
                    manifest.id,
                    version=manifest.version,
                    status=keep_status,
                    reason=None,
                    settings=settings,
                    applied_migrations=applied,
                    retain_until=None,
                    pending_version=None,
                )
                await _announce(s, tenant, manifest, operation, keep_status)
                await audit_service.record(
                    s, actor, AUDITED[operation], tenant.id, f"plugin:{manifest.id}",
                    after={"version": manifest.version, "restored": restore},
                )  # fmt: skip
            outcome = "ok"
            log.info(
                "plugin_" + operation,
                plugin=manifest.id,
                version=manifest.version,
                tenant_id=str(tenant.id),
                restored=restore,
            )
        finally:
            INSTALL_SECONDS.labels(manifest.id, operation, outcome).observe(
                asyncio.get_running_loop().time() - started
            )

    async def _undo(
        self, tenant: TenantRef, plugin_id: str, exc: Exception, *, keep_role: bool
    ) -> None:
        """Compensate a failed install, restore or upgrade; idempotent, so a crash between the
        steps is finished by calling it again (``recover``).

        The role's sessions end; a new install's role and everything it owns go; a restored or
        upgraded plugin keeps its role and data, sealed again (no login, no CREATE). The
        attempt is written to the audit log as ``plugin.migration_refused``."""
        role = plugin_role(plugin_id, tenant.id)
        async with self.db.session() as s:
            await objects_repo.end_role_sessions(s, role)
        async with self.db.session() as s:
            if keep_role:
                await objects_repo.seal_role(s, role, tenant.schema)
            else:
                await objects_repo.drop_plugin_objects(s, tenant.schema, role, plugin_id)
            if await installs_repo.get_installation(s, tenant.id, plugin_id) is not None:
                await installs_repo.update_installation(
                    s, tenant.id, plugin_id, pending_version=None
                )
            if isinstance(exc, MigrationRefusedError):
                await audit_service.record(
                    s,
                    "platform",
                    "plugin.migration_refused",
                    tenant.id,
                    plugin_id,
                    after={"reason": exc.message, "details": exc.details},
                )

    async def _install_failed(
        self, tenant: TenantRef, plugin_id: str, exc: Exception, *, restoring: bool
    ) -> None:
        """Undo a failed install or restore and record it as failed."""
        await self._undo(tenant, plugin_id, exc, keep_role=restoring)
        await self._fail(tenant, plugin_id, exc, status=InstallStatus.FAILED)

    async def _upgrade_failed(
        self, tenant: TenantRef, plugin_id: str, exc: Exception, version: str
    ) -> None:
        """Undo a failed upgrade to ``version``: the plugin keeps its status and version, and
        the reason is on record."""
        await self._undo(tenant, plugin_id, exc, keep_role=True)
        await self._fail(
            tenant, plugin_id, exc, status=None, prefix=f"upgrade to {version} failed: "
        )

    async def _ensure_login(self, plugin_id: str) -> None:
        # Committed before the install's transaction: the plugin's process connects with this
        # login, and must be able to before it can answer the readiness check.
        async with self.db.session() as s:
            await ensure_login(s, plugin_id)

    async def _fail(
        self,
        tenant: TenantRef,
        plugin_id: str,
        exc: Exception,
        *,
        status: InstallStatus | None,
        prefix: str = "",
    ) -> None:
        reason = prefix + (exc.message if isinstance(exc, PlexicaError) else _db_message(exc))
        log.warning(
            "plugin_install_failed", plugin=plugin_id, tenant_id=str(tenant.id), reason=reason
        )
        async with self.db.session() as s:
            current = await installs_repo.get_installation(s, tenant.id, plugin_id, lock=True)
            if current is None:
                return
            values: dict[str, Any] = {"reason": reason[:2000]}
            if status is not None:
                # A restore that failed leaves the retained data as it was.
                was_retained = current["retain_until"] is not None
                values["status"] = InstallStatus.UNINSTALLED if was_retained else status
            await installs_repo.update_installation(s, tenant.id, plugin_id, **values)


async def _dependencies_installed(
    session: AsyncSession, manifest: Manifest, tenant_id: UUID
) -> None:
    rows = await installs_repo.list_installations(session, tenant_id, InstallStatus.ACTIVE)
    unmet = unmet_dependencies(manifest, {r["plugin_id"]: r["version"] for r in rows})
    if unmet:
        dep = unmet[0]
        raise IncompatibleError(
            f"{manifest.id} needs plugin {dep.id} {dep.version} active in this tenant",
            details={"check": "dependency", "plugin": dep.id, "required": dep.version},
        )


async def _announce(
    s: AsyncSession, tenant: TenantRef, manifest: Manifest, operation: str, status: InstallStatus
) -> None:
    """Event delivery follows the installation, in the same transaction as its state."""
    await events_service.register_subscriptions(
        s, manifest.id, [e.type for e in manifest.events.consumes]
    )
    await events_service.set_plugin_active(
        s, manifest.id, tenant.id, status == InstallStatus.ACTIVE
    )
    if operation == "install":
        await events_service.publish(
            s,
            CoreEvent.PLUGIN_INSTALLED,
            {"plugin_id": manifest.id, "version": manifest.version},
            tenant_id=tenant.id,
            subject=f"plugins/{manifest.id}",
        )


def _db_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def as_plexica(exc: Exception) -> PlexicaError:
    if isinstance(exc, PlexicaError):
        return exc
    return InstallFailedError(f"install failed: {_db_message(exc)}")
