"""Plugin catalog (operator) and per-tenant installation lifecycle.

Install, upgrade and restore run as a job with their own transactions (``Database.session``):
the installation row is marked ``installing`` first, then the role, grants, migrations, functions
and the switch to ``active`` happen in ONE transaction that commits only after the plugin answers
ready. PostgreSQL DDL and roles are transactional, so any failure rolls back every object; the
reason is then written to the installation in a separate transaction.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import structlog
from jsonschema import Draft202012Validator
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp

from plexica import __version__
from plexica.audit import service as audit_service
from plexica.events import service as events_service
from plexica.events.events import CoreEvent
from plexica.flags import service as flags_service
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.plugins import repository as repo
from plexica.plugins.migrator import migrate_as_role
from plexica.plugins.schemas import (
    IncompatibleError,
    InstallationNotFoundError,
    InstallationOut,
    InstallBusyError,
    InstallFailedError,
    InstallStatus,
    InvalidSettingsError,
    InvalidStateError,
    MigrationFile,
    MigrationRefusedError,
    PluginLogin,
    PluginNotFoundError,
    PluginNotReadyError,
    PluginVersionOut,
    VersionStatus,
)
from plexica_sdk.auth import PermissionResolver
from plexica_sdk.db import plugin_role
from plexica_sdk.errors import ConflictError, PlexicaError
from plexica_sdk.manifest import Manifest, parse_manifest
from plexica_sdk.semver import Version, VersionRange

log = structlog.get_logger("plexica.plugins")
# An installation in one of these states is not installed again.
BUSY = (InstallStatus.ACTIVE, InstallStatus.DISABLED, InstallStatus.INSTALLING)

RECOVERED = Counter(
    "plexica_plugin_recovered_total",
    "Plugin installs and upgrades a crash interrupted, undone by the reconciler.",
    ["operation"],
)
INSTALL_SECONDS = Histogram(
    "plexica_plugin_install_duration_seconds",
    "Plugin install/upgrade duration by plugin and outcome.",
    ["plugin", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

# A migration is run as the plugin's role; these would let it leave that role.
_ROLE_SWITCH = re.compile(
    r"\b(RESET\s+(ROLE|ALL|SESSION\s+AUTHORIZATION)|SET\s+(LOCAL\s+|SESSION\s+)?ROLE"
    r"|SESSION\s+AUTHORIZATION|SECURITY\s+DEFINER)\b",
    re.IGNORECASE,
)

ReadinessProbe = Callable[[Manifest, TenantRef], Awaitable[None]]


# --- catalog -------------------------------------------------------------------------------


def _version_out(row: Mapping[str, Any]) -> PluginVersionOut:
    m = row["manifest"]
    return PluginVersionOut(
        plugin_id=row["plugin_id"],
        version=row["version"],
        status=VersionStatus(row["status"]),
        name=m.get("name", ""),
        core=m.get("core", "*"),
        registered_at=row.get("registered_at"),
        manifest=m,
    )


def _sorted(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["plugin_id"], Version.parse(r["version"])))


async def register(
    session: AsyncSession, manifest_doc: dict[str, Any], migrations: list[MigrationFile]
) -> PluginVersionOut:
    """Add a plugin version to the catalog after checking it against the core and catalog."""
    manifest = parse_manifest(manifest_doc)
    if await repo.get_version(session, manifest.id, manifest.version):
        raise ConflictError(
            f"{manifest.id} {manifest.version} is already registered", code="version_exists"
        )
    for m in migrations:
        _check_migration_text(m)
    catalog = await _catalog(session)
    check_compatibility(manifest, catalog)
    await repo.insert_version(
        session,
        manifest.id,
        manifest.version,
        manifest.model_dump(mode="json"),
        [m.model_dump() for m in migrations],
    )
    for flag in manifest.feature_flags:
        key = flag.key if flag.key.startswith(manifest.id + ".") else f"{manifest.id}.{flag.key}"
        await flags_service.declare(
            session, f"plugin:{manifest.id}", key, flag.description, flag.default
        )
    log.info("plugin_registered", plugin=manifest.id, version=manifest.version)
    row = await repo.get_version(session, manifest.id, manifest.version)
    assert row is not None
    return _version_out(row)


async def _catalog(session: AsyncSession) -> dict[str, list[Manifest]]:
    out: dict[str, list[Manifest]] = {}
    for row in _sorted(await repo.list_versions(session)):
        if row["status"] != VersionStatus.DEPRECATED:
            out.setdefault(row["plugin_id"], []).append(Manifest.model_validate(row["manifest"]))
    return out


def check_compatibility(
    manifest: Manifest,
    available: Mapping[str, list[Manifest]],
    core_version: str = __version__,
) -> None:
    """Core range holds, each required dependency has a compatible version, no cycles."""
    if not VersionRange.parse(manifest.core).contains(core_version):
        raise IncompatibleError(
            f"{manifest.id} {manifest.version} needs core {manifest.core}, this is {core_version}",
            details={"check": "core", "required": manifest.core, "actual": core_version},
        )
    for dep in manifest.dependencies:
        if dep.optional:
            continue
        rng = VersionRange.parse(dep.version)
        if not any(rng.contains(m.semver) for m in available.get(dep.id, [])):
            raise IncompatibleError(
                f"{manifest.id} needs plugin {dep.id} {dep.version}, which is not available",
                details={"check": "dependency", "plugin": dep.id, "required": dep.version},
            )
    _check_cycles(manifest, available)


def _check_cycles(manifest: Manifest, available: Mapping[str, list[Manifest]]) -> None:
    graph: dict[str, set[str]] = {
        pid: {d.id for m in versions for d in m.dependencies} for pid, versions in available.items()
    }
    graph[manifest.id] = {d.id for d in manifest.dependencies}
    path: list[str] = []

    def visit(node: str) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            raise IncompatibleError(
                "plugin dependencies form a cycle: " + " -> ".join(cycle),
                details={"check": "cycle", "cycle": cycle},
            )
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()

    visit(manifest.id)


async def set_status(
    session: AsyncSession, plugin_id: str, version: str, status: VersionStatus
) -> PluginVersionOut:
    row = await repo.get_version(session, plugin_id, version)
    if row is None:
        raise PluginNotFoundError(f"no plugin {plugin_id} {version} in the catalog")
    if status == VersionStatus.PUBLISHED and row["status"] == VersionStatus.DEPRECATED:
        raise InvalidStateError(f"{plugin_id} {version} is deprecated")
    await repo.set_version_status(session, plugin_id, version, status)
    row = await repo.get_version(session, plugin_id, version)
    assert row is not None
    return _version_out(row)


async def list_versions(
    session: AsyncSession, plugin_id: str | None = None, *, published_only: bool = False
) -> list[PluginVersionOut]:
    rows = _sorted(await repo.list_versions(session, plugin_id))
    if published_only:
        rows = [r for r in rows if r["status"] == VersionStatus.PUBLISHED]
    return [_version_out(r) for r in rows]


async def _pick_version(
    session: AsyncSession, plugin_id: str, version: str | None
) -> tuple[Manifest, list[MigrationFile]]:
    if version is None:
        published = [
            r
            for r in _sorted(await repo.list_versions(session, plugin_id))
            if r["status"] == VersionStatus.PUBLISHED
        ]
        if not published:
            raise PluginNotFoundError(f"no published version of plugin {plugin_id}")
        row = published[-1]
    else:
        found = await repo.get_version(session, plugin_id, version)
        if found is None or found["status"] != VersionStatus.PUBLISHED:
            raise PluginNotFoundError(f"no published version {version} of plugin {plugin_id}")
        row = found
    return (
        Manifest.model_validate(row["manifest"]),
        [MigrationFile.model_validate(m) for m in row["migrations"]],
    )


def _check_migration_text(migration: MigrationFile) -> None:
    if _ROLE_SWITCH.search(migration.sql):
        raise MigrationRefusedError(
            f"migration {migration.name} changes the database role, which is not allowed",
            details={"migration": migration.name},
        )


# --- installations -------------------------------------------------------------------------


def _install_out(row: Mapping[str, Any]) -> InstallationOut:
    return InstallationOut(
        tenant_id=row["tenant_id"],
        plugin_id=row["plugin_id"],
        version=row["version"],
        status=InstallStatus(row["status"]),
        reason=row["reason"],
        settings=row["settings"] or {},
        applied_migrations=list(row["applied_migrations"] or []),
        retain_until=row["retain_until"],
        updated_at=row["updated_at"],
    )


def validate_settings(manifest: Manifest, settings: dict[str, Any]) -> None:
    errors = sorted(
        Draft202012Validator(manifest.settings_schema).iter_errors(settings),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        problems = [
            {"path": ".".join(str(p) for p in e.absolute_path) or "(root)", "message": e.message}
            for e in errors
        ]
        raise InvalidSettingsError(
            f"invalid settings: {problems[0]['path']}: {problems[0]['message']}",
            details=problems,
        )


async def get_installation(
    session: AsyncSession, tenant_id: UUID, plugin_id: str
) -> InstallationOut:
    row = await repo.get_installation(session, tenant_id, plugin_id)
    if row is None:
        raise _not_installed(plugin_id)
    return _install_out(row)


async def list_installations(session: AsyncSession, tenant_id: UUID) -> list[InstallationOut]:
    return [_install_out(r) for r in await repo.list_installations(session, tenant_id)]


async def is_active(session: AsyncSession, tenant_id: UUID, plugin_id: str) -> bool:
    row = await repo.get_installation(session, tenant_id, plugin_id)
    return row is not None and row["status"] == InstallStatus.ACTIVE


async def permissions_for(
    session: AsyncSession, tenant_id: UUID | None, roles: frozenset[str]
) -> frozenset[str]:
    """Permissions the active plugins of a tenant grant by default to ``roles`` (for the
    identity domain's role → permission resolution)."""
    if tenant_id is None:
        return frozenset()
    granted: set[str] = set()
    for row in await repo.list_installations(session, tenant_id, InstallStatus.ACTIVE):
        version = await repo.get_version(session, row["plugin_id"], row["version"])
        if version is not None:
            granted |= Manifest.model_validate(version["manifest"]).default_permissions(roles)
    return frozenset(granted)


def permission_resolver(db: Database) -> PermissionResolver:
    """``permissions_for`` in the shape ``JwtVerifier(permissions=...)`` takes."""

    async def resolve(tenant_id: UUID | None, roles: frozenset[str]) -> frozenset[str]:
        async with db.session() as session:
            return await permissions_for(session, tenant_id, roles)

    return resolve


async def ui_contributions(session: AsyncSession, tenant_id: UUID) -> list[dict[str, Any]]:
    """Pages and slots of the tenant's active plugins, for the web shell's navigation."""
    out: list[dict[str, Any]] = []
    for row in await repo.list_installations(session, tenant_id, InstallStatus.ACTIVE):
        version = await repo.get_version(session, row["plugin_id"], row["version"])
        if version is None:
            continue
        m = Manifest.model_validate(version["manifest"])
        out.append(
            {
                "plugin_id": m.id,
                "name": m.name,
                "base_path": m.base_path,
                "pages": [p.model_dump() for p in m.ui.pages],
                "slots": [sl.model_dump() for sl in m.ui.slots],
            }
        )
    return out


async def subscribers(session: AsyncSession, tenant_id: UUID, event_type: str) -> list[str]:
    """Plugins active in the tenant whose manifest consumes ``event_type`` (for the events
    domain's delivery: a disabled plugin gets no events)."""
    out: list[str] = []
    for row in await repo.list_installations(session, tenant_id, InstallStatus.ACTIVE):
        version = await repo.get_version(session, row["plugin_id"], row["version"])
        if version is None:
            continue
        consumes = Manifest.model_validate(version["manifest"]).events.consumes
        if any(e.type == event_type for e in consumes):
            out.append(row["plugin_id"])
    return out


async def _dependencies_installed(
    session: AsyncSession, manifest: Manifest, tenant_id: UUID
) -> None:
    for dep in manifest.dependencies:
        if dep.optional:
            continue
        row = await repo.get_installation(session, tenant_id, dep.id)
        ok = (
            row is not None
            and row["status"] == InstallStatus.ACTIVE
            and VersionRange.parse(dep.version).contains(row["version"])
        )
        if not ok:
            raise IncompatibleError(
                f"{manifest.id} needs plugin {dep.id} {dep.version} active in this tenant",
                details={"check": "dependency", "plugin": dep.id, "required": dep.version},
            )


class Installer:
    """Runs install, upgrade, restore, enable/disable and uninstall for one deployment."""

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

    @asynccontextmanager
    async def _lease(self, tenant_id: UUID, plugin_id: str) -> AsyncIterator[None]:
        """One install, upgrade, uninstall or recovery at a time per tenant and plugin (ADR
        0170): a session advisory lock on a connection of its own, which PostgreSQL frees when
        the holder dies. An installation left ``installing`` or with a ``pending_version`` and
        nobody holding its lease was interrupted by a crash. The lease's connection is not
        from the pool, which the operation's own sessions need."""
        async with self.db.unpooled_connection() as conn:
            locked = await repo.try_lease(conn, tenant_id, plugin_id)
            await conn.commit()
            if not locked:
                raise InstallBusyError(
                    f"another operation on plugin {plugin_id} in this tenant is running",
                    details={"tenant_id": str(tenant_id), "plugin_id": plugin_id},
                )
            try:
                yield
            finally:
                await repo.release_lease(conn, tenant_id, plugin_id)
                await conn.commit()

    async def install(
        self,
        tenant: TenantRef,
        plugin_id: str,
        version: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> InstallationOut:
        """Install, or restore retained data; what a crash left of an earlier attempt is undone
        first."""
        async with self._lease(tenant.id, plugin_id):
            await self._recover(tenant, plugin_id)
            return await self._install(tenant, plugin_id, version, settings or {})

    async def _install(
        self,
        tenant: TenantRef,
        plugin_id: str,
        version: str | None,
        settings: dict[str, Any],
    ) -> InstallationOut:
        role = plugin_role(plugin_id, tenant.id)
        async with self.db.session() as s:
            manifest, migrations = await _pick_version(s, plugin_id, version)
            validate_settings(manifest, settings)
            if not await repo.schema_exists(s, tenant.schema):
                raise InstallationNotFoundError("no such tenant")
            current = await repo.get_installation(s, tenant.id, plugin_id, lock=True)
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
            claimed = await repo.upsert_installation(
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
            await self._apply(tenant, manifest, migrations, settings, "install", restore=restoring)
        except Exception as exc:  # noqa: BLE001 - any failure is undone and recorded, then re-raised
            await self._undo(tenant, plugin_id, exc, keep_role=restoring)
            await self._fail(tenant, plugin_id, exc, status=InstallStatus.FAILED)
            raise _as_plexica(exc) from None
        return await self._out(tenant.id, plugin_id)

    async def upgrade(
        self, tenant: TenantRef, plugin_id: str, version: str | None = None
    ) -> InstallationOut:
        async with self._lease(tenant.id, plugin_id):
            await self._recover(tenant, plugin_id)
            return await self._upgrade(tenant, plugin_id, version)

    async def _upgrade(
        self, tenant: TenantRef, plugin_id: str, version: str | None
    ) -> InstallationOut:
        async with self.db.session() as s:
            current = await repo.get_installation(s, tenant.id, plugin_id)
            if current is None or current["status"] not in (
                InstallStatus.ACTIVE,
                InstallStatus.DISABLED,
            ):
                raise InvalidStateError(f"plugin {plugin_id} is not installed in this tenant")
            manifest, migrations = await _pick_version(s, plugin_id, version)
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
                keep_status=InstallStatus(current["status"]),
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any failure is undone and recorded, then re-raised
            await self._undo(tenant, plugin_id, exc, keep_role=True)
            await self._fail(
                tenant,
                plugin_id,
                exc,
                status=None,
                prefix=f"upgrade to {manifest.version} failed: ",
            )
            raise _as_plexica(exc) from None
        return await self._out(tenant.id, plugin_id)

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
    ) -> None:
        role = plugin_role(manifest.id, tenant.id)
        started = asyncio.get_running_loop().time()
        outcome = "failed"
        password = _new_password()
        try:
            # 1. The platform prepares: the role may log in and create in the tenant schema,
            # the platform's functions exist, and the installation says what is in progress.
            async with self.db.session() as s:
                current = await repo.get_installation(s, tenant.id, manifest.id, lock=True)
                applied = list(current["applied_migrations"] or []) if current else []
                # Compatibility is checked again here: the catalog may have changed since
                # registration, and dependencies are per tenant.
                check_compatibility(manifest, await _catalog(s), self.core_version)
                await _dependencies_installed(s, manifest, tenant.id)
                await repo.prepare_migration_role(
                    s,
                    role,
                    tenant.schema,
                    password,
                    statement_timeout_ms=int(self.migration_timeout * 1000),
                )
                await repo.create_functions(s, tenant.schema, role, manifest.id, tenant.id)
                await repo.update_installation(
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
                outside = await repo.foreign_objects(s, role, tenant.schema, manifest.table_prefix)
                if outside:
                    raise MigrationRefusedError(
                        f"migrations created objects outside the prefix {manifest.table_prefix!r}:"
                        f" {', '.join(sorted(outside))}",
                        details={"objects": sorted(outside)},
                    )
                await repo.seal_role(s, role, tenant.schema)
                await _login_membership(
                    s, manifest.id, role, active=keep_status == InstallStatus.ACTIVE
                )
                await repo.update_installation(
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
            await repo.end_role_sessions(s, role)
        async with self.db.session() as s:
            if keep_role:
                await repo.seal_role(s, role, tenant.schema)
            else:
                await repo.drop_plugin_objects(s, tenant.schema, role, plugin_id)
            if await repo.get_installation(s, tenant.id, plugin_id) is not None:
                await repo.update_installation(s, tenant.id, plugin_id, pending_version=None)
            if isinstance(exc, MigrationRefusedError):
                await audit_service.record(
                    s,
                    "platform",
                    "plugin.migration_refused",
                    tenant.id,
                    plugin_id,
                    after={"reason": exc.message, "details": exc.details},
                )

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
            rows = await repo.interrupted_installations(s)
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
            row = await repo.get_installation(s, tenant.id, plugin_id)
        if row is None:
            return False
        interrupted = InterruptedError("interrupted; run the operation again")
        if row["status"] == InstallStatus.INSTALLING:
            restoring = row["retain_until"] is not None
            await self._undo(tenant, plugin_id, interrupted, keep_role=restoring)
            await self._fail(tenant, plugin_id, interrupted, status=InstallStatus.FAILED)
            return True
        if row["pending_version"] is not None:
            await self._undo(tenant, plugin_id, interrupted, keep_role=True)
            await self._fail(
                tenant,
                plugin_id,
                interrupted,
                status=None,
                prefix=f"upgrade to {row['pending_version']} failed: ",
            )
            return True
        return False

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
            current = await repo.get_installation(s, tenant.id, plugin_id, lock=True)
            if current is None:
                return
            values: dict[str, Any] = {"reason": reason[:2000]}
            if status is not None:
                # A restore that failed leaves the retained data as it was.
                was_retained = current["retain_until"] is not None
                values["status"] = InstallStatus.UNINSTALLED if was_retained else status
            await repo.update_installation(s, tenant.id, plugin_id, **values)

    async def _out(self, tenant_id: UUID, plugin_id: str) -> InstallationOut:
        async with self.db.session() as s:
            return await get_installation(s, tenant_id, plugin_id)

    async def set_enabled(
        self, tenant: TenantRef, plugin_id: str, enabled: bool
    ) -> InstallationOut:
        async with self.db.session() as s:
            row = await repo.get_installation(s, tenant.id, plugin_id, lock=True)
            want, source = (
                (InstallStatus.ACTIVE, InstallStatus.DISABLED)
                if enabled
                else (InstallStatus.DISABLED, InstallStatus.ACTIVE)
            )
            if row is None or row["status"] not in (want, source):
                raise InvalidStateError(f"plugin {plugin_id} is not installed in this tenant")
            if row["status"] != want:
                await repo.update_installation(s, tenant.id, plugin_id, status=want, reason=None)
                await _login_membership(s, plugin_id, row["db_role"], active=enabled)
                await events_service.set_plugin_active(s, plugin_id, tenant.id, enabled)
                event = CoreEvent.PLUGIN_ENABLED if enabled else CoreEvent.PLUGIN_DISABLED
                await events_service.publish(
                    s,
                    event,
                    {"plugin_id": plugin_id},
                    tenant_id=tenant.id,
                    subject=f"plugins/{plugin_id}",
                )
                log.info(
                    "plugin_" + ("enabled" if enabled else "disabled"),
                    plugin=plugin_id,
                    tenant_id=str(tenant.id),
                )
        return await self._out(tenant.id, plugin_id)

    async def uninstall(
        self, tenant: TenantRef, plugin_id: str, *, purge: bool = False
    ) -> InstallationOut | None:
        """Keep the data for the manifest's retention window, or drop it all with ``purge``.
        One transaction: a crash in it leaves the installation as it was."""
        async with self._lease(tenant.id, plugin_id):
            return await self._uninstall(tenant, plugin_id, purge=purge)

    async def _uninstall(
        self, tenant: TenantRef, plugin_id: str, *, purge: bool
    ) -> InstallationOut | None:
        async with self.db.session() as s:
            row = await repo.get_installation(s, tenant.id, plugin_id, lock=True)
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
            if purge or row["status"] == InstallStatus.FAILED:
                await repo.drop_plugin_objects(s, tenant.schema, row["db_role"], plugin_id)
                await repo.delete_installation(s, tenant.id, plugin_id)
                log.info("plugin_purged", plugin=plugin_id, tenant_id=str(tenant.id))
                return None
            if row["status"] not in (InstallStatus.ACTIVE, InstallStatus.DISABLED):
                raise InvalidStateError(f"plugin {plugin_id} is {row['status']} in this tenant")
            version = await repo.get_version(s, plugin_id, row["version"])
            days = (
                Manifest.model_validate(version["manifest"]).data_retention_days if version else 30
            )
            await _login_membership(s, plugin_id, row["db_role"], active=False)
            await repo.update_installation(
                s,
                tenant.id,
                plugin_id,
                status=InstallStatus.UNINSTALLED,
                retain_until=datetime.now(UTC) + timedelta(days=days),
                reason=None,
            )
        return await self._out(tenant.id, plugin_id)

    async def update_settings(
        self, tenant: TenantRef, plugin_id: str, settings: dict[str, Any]
    ) -> InstallationOut:
        async with self.db.session() as s:
            row = await repo.get_installation(s, tenant.id, plugin_id, lock=True)
            if row is None or row["status"] not in (InstallStatus.ACTIVE, InstallStatus.DISABLED):
                raise InstallationNotFoundError(
                    f"plugin {plugin_id} is not installed in this tenant"
                )
            version = await repo.get_version(s, plugin_id, row["version"])
            assert version is not None
            validate_settings(Manifest.model_validate(version["manifest"]), settings)
            await repo.update_installation(s, tenant.id, plugin_id, settings=settings)
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
            target, _ = await _pick_version(s, plugin_id, version)
            rows = [
                r
                for r in await repo.list_installations(s)
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
            rows = await repo.expired_installations(s, now or datetime.now(UTC))
        for row in rows:
            ref = TenantRef(row["tenant_id"], row["tenant_slug"], row["tenant_slug"], "")
            await self.uninstall(ref, row["plugin_id"], purge=True)
        return len(rows)

    async def purge_tenant(self, tenant: TenantRef) -> None:
        async with self.db.session() as s:
            rows = await repo.list_installations(s, tenant.id)
        for row in rows:
            await self.uninstall(tenant, row["plugin_id"], purge=True)


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


def _not_installed(plugin_id: str) -> InstallationNotFoundError:
    return InstallationNotFoundError(f"plugin {plugin_id} is not installed in this tenant")


def _db_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def _as_plexica(exc: Exception) -> PlexicaError:
    if isinstance(exc, PlexicaError):
        return exc
    return InstallFailedError(f"install failed: {_db_message(exc)}")


# --- the plugin's own database login (ADR 0076) --------------------------------------------


def _new_password() -> str:
    return secrets.token_urlsafe(32)


async def ensure_login(session: AsyncSession, plugin_id: str, *, sync: bool = False) -> PluginLogin:
    """The plugin's login, created on first use. A new login (or ``sync``) is made a member of
    the plugin's role in every tenant where the plugin is active, and of no other."""
    row = await repo.get_plugin_login(session, plugin_id)
    created = False
    if row is None or not await repo.role_exists(session, row["role_name"]):
        await repo.lock_plugin_login(session, plugin_id)
        row = await repo.get_plugin_login(session, plugin_id)
        if row is None or not await repo.role_exists(session, row["role_name"]):
            # Roles are global to the server: a suffix keeps two deployments sharing one apart.
            role = f"plx_{plugin_id}_login_{secrets.token_hex(4)}"
            await repo.create_plugin_login(session, plugin_id, role, _new_password())
            await events_service.allow_plugin_login(session, role)
            row = await repo.get_plugin_login(session, plugin_id)
            assert row is not None
            created = True
            log.info("plugin_login_created", plugin=plugin_id, role=role)
    if created or sync:
        for inst in await repo.list_installations(session):
            if inst["plugin_id"] == plugin_id and await repo.role_exists(session, inst["db_role"]):
                await repo.set_login_membership(
                    session,
                    inst["db_role"],
                    row["role_name"],
                    member=inst["status"] == InstallStatus.ACTIVE,
                )
    return PluginLogin(plugin_id=plugin_id, role=row["role_name"], password=row["password"])


async def rotate_login(session: AsyncSession, plugin_id: str) -> PluginLogin:
    """A new password for the plugin's login; the old one stops working at commit."""
    login = await ensure_login(session, plugin_id)
    password = _new_password()
    await repo.set_plugin_login_password(session, plugin_id, login.role, password)
    log.info("plugin_login_rotated", plugin=plugin_id, role=login.role)
    return PluginLogin(plugin_id=plugin_id, role=login.role, password=password)


async def _login_membership(
    session: AsyncSession, plugin_id: str, tenant_role: str, *, active: bool
) -> None:
    login = await repo.get_plugin_login(session, plugin_id)
    if login is not None and await repo.role_exists(session, login["role_name"]):
        await repo.set_login_membership(session, tenant_role, login["role_name"], member=active)


# --- readiness of the plugin service -------------------------------------------------------


class HttpReadinessProbe:
    """Polls the plugin's readiness path until it answers 200 or ``timeout`` passes.

    ``endpoints`` maps a plugin id to its base URL (distributed) or its ASGI app (embedded)."""

    def __init__(
        self,
        endpoints: Mapping[str, str | ASGIApp],
        *,
        timeout: float = 10.0,
        interval: float = 0.1,
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.interval = interval

    async def __call__(self, manifest: Manifest, tenant: TenantRef) -> None:
        target = self.endpoints.get(manifest.id)
        if target is None:
            raise PluginNotReadyError(f"plugin {manifest.id} is not deployed")
        if isinstance(target, str):
            client = httpx.AsyncClient(base_url=target, timeout=2.0)
        else:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=target), base_url="http://plugin", timeout=2.0
            )
        last = "no answer"
        async with client:
            deadline = asyncio.get_running_loop().time() + self.timeout
            while True:
                try:
                    response = await client.get(manifest.api.readiness_path)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                if asyncio.get_running_loop().time() >= deadline:
                    raise PluginNotReadyError(
                        f"plugin {manifest.id} did not become ready in {self.timeout:g} s ({last})"
                    )
                await asyncio.sleep(self.interval)


# --- provisioning --------------------------------------------------------------------------


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


async def tenant_by_slug(session: AsyncSession, slug: str) -> TenantRef | None:
    tenant_id = await repo.tenant_id_by_slug(session, slug)
    return TenantRef(tenant_id, slug, slug, "") if tenant_id else None


async def upstream_timeouts(session: AsyncSession) -> dict[str, float]:
    """Each plugin's upstream timeout at the edge: the longest its catalog versions ask for
    (the version installed differs per tenant; the route is one)."""
    return {
        plugin_id: max(m.api.upstream_timeout_seconds for m in manifests)
        for plugin_id, manifests in (await _catalog(session)).items()
    }


async def routed_ids(session: AsyncSession) -> list[str]:
    """Plugins the gateway routes: installed (active or disabled) in at least one tenant, so a
    route appears with the first install on the platform and goes with the last removal."""
    return await repo.installed_plugin_ids(session)


async def installation_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Installations by (plugin, state), every tenant's."""
    return await repo.count_installations(session)
