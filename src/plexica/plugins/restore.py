"""A tenant's plugin installations as a backup keeps them, and brought back into a restored tenant.

A backup's schema keeps no owners: the restore gives each plugin's objects (by its table prefix)
to the new tenant's role of the plugin, records the installation as retained data, and then
installs it the way a retained install is restored (ADR 0172): the platform's functions for the
new tenant, pending migrations, the readiness check, the sealed role and the plugin's login.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.provisioning import TenantRef
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import tenant_objects as objects_repo
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import InstallStatus
from plexica.plugins.service import Installer
from plexica_sdk.db import plugin_role
from plexica_sdk.manifest import stored_manifest

KEPT = (InstallStatus.ACTIVE, InstallStatus.DISABLED, InstallStatus.UNINSTALLED)


class SavedInstallation(BaseModel):
    plugin_id: str
    version: str
    status: InstallStatus
    settings: dict[str, Any] = Field(default_factory=dict)
    applied_migrations: list[str] = Field(default_factory=list)
    table_prefix: str
    depends_on: list[str] = Field(default_factory=list)
    retain_until: datetime | None = None


async def saved_installations(session: AsyncSession, tenant_id: Any) -> list[SavedInstallation]:
    """What a backup keeps of the tenant's plugins: installed (active or disabled) and retained
    ones; failed or half-done operations are not worth restoring."""
    saved = []
    for row in await installs_repo.list_installations(session, tenant_id):
        if row["status"] not in KEPT:
            continue
        version = await versions_repo.get_version(session, row["plugin_id"], row["version"])
        if version is None:
            continue
        manifest = stored_manifest(version["manifest"])
        saved.append(
            SavedInstallation(
                plugin_id=row["plugin_id"],
                version=row["version"],
                status=InstallStatus(row["status"]),
                settings=row["settings"] or {},
                applied_migrations=list(row["applied_migrations"] or []),
                table_prefix=manifest.table_prefix,
                depends_on=[d.id for d in manifest.dependencies],
                retain_until=row["retain_until"],
            )
        )
    return saved


def install_order(saved: list[SavedInstallation]) -> list[SavedInstallation]:
    """Dependencies first (a plugin is installed only after those it depends on)."""
    by_id = {s.plugin_id: s for s in saved}
    ordered: list[SavedInstallation] = []
    seen: set[str] = set()

    def visit(item: SavedInstallation) -> None:
        if item.plugin_id in seen:
            return
        seen.add(item.plugin_id)
        for dep in item.depends_on:
            if dep in by_id:
                visit(by_id[dep])
        ordered.append(item)

    for item in sorted(saved, key=lambda s: s.plugin_id):
        visit(item)
    return ordered


async def restore_installations(
    installer: Installer, tenant: TenantRef, saved: list[SavedInstallation]
) -> None:
    for item in install_order(saved):
        role = plugin_role(item.plugin_id, tenant.id)
        retained = item.status is InstallStatus.UNINSTALLED
        until = item.retain_until if retained else None
        async with installer.db.session() as s:
            await installs_repo.upsert_installation(
                s, tenant_id=tenant.id, tenant_slug=tenant.slug, plugin_id=item.plugin_id,
                version=item.version, status=InstallStatus.UNINSTALLED, db_role=role,
                settings=item.settings,
            )  # fmt: skip
            await installs_repo.update_installation(
                s, tenant.id, item.plugin_id, applied_migrations=item.applied_migrations,
                retain_until=until or datetime.now(UTC) + timedelta(days=1),
            )  # fmt: skip
            # Made like a migration's role, then sealed at once: it never logs in here.
            await objects_repo.prepare_migration_role(
                s, role, tenant.schema, secrets.token_urlsafe(24), statement_timeout_ms=60_000
            )
            await objects_repo.give_prefixed_objects(s, tenant.schema, item.table_prefix, role)
            await objects_repo.seal_role(s, role, tenant.schema)
        if retained:
            continue
        await installer.install(tenant, item.plugin_id, item.version, item.settings)
        if item.status is InstallStatus.DISABLED:
            await installer.set_enabled(tenant, item.plugin_id, False)
