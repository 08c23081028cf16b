"""The catalog as a tenant's admin browses it (ADR 0241): each published plugin's latest version,
what this tenant has installed, whether an upgrade is offered and whether it would install. A
plugin the tenant has is listed even when none of its versions is published any more, so that
one call draws the admin's whole Plugins page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from plexica import __version__
from plexica.plugins.catalog import unmet_dependencies
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import CatalogEntryOut, InstallStatus, VersionStatus
from plexica_sdk.manifest import Manifest, stored_manifest
from plexica_sdk.semver import Version, VersionRange

INSTALLED = (InstallStatus.ACTIVE, InstallStatus.DISABLED)


async def tenant_catalog(
    session: AsyncSession, tenant_id: UUID, core_version: str = __version__
) -> list[CatalogEntryOut]:
    latest: dict[str, Manifest] = {}
    versions: dict[tuple[str, str], dict[str, Any]] = {}
    for row in await versions_repo.list_versions(session):
        versions[row["plugin_id"], row["version"]] = row["manifest"]
        if row["status"] != VersionStatus.PUBLISHED:
            continue
        manifest = stored_manifest(row["manifest"])
        known = latest.get(manifest.id)
        if known is None or manifest.semver > known.semver:
            latest[manifest.id] = manifest
    installs = {
        r["plugin_id"]: r for r in await installs_repo.list_installations(session, tenant_id)
    }
    active = {p: r["version"] for p, r in installs.items() if r["status"] == InstallStatus.ACTIVE}
    out = []
    for p in sorted(latest.keys() | installs.keys()):
        current = installs.get(p)
        offered = latest.get(p)
        if offered is not None:
            out.append(_entry(offered, current, active, core_version))
        elif current is not None:
            had = stored_manifest(versions[p, current["version"]])
            out.append(_unpublished(had, current))
    return out


def incompatibility(manifest: Manifest, active: Mapping[str, str], core_version: str) -> str | None:
    """Why installing ``manifest`` in a tenant with these active plugins would be refused."""
    if not VersionRange.parse(manifest.core).contains(core_version):
        return f"needs core {manifest.core}, this is {core_version}"
    unmet = unmet_dependencies(manifest, active)
    if unmet:
        return "needs " + ", ".join(f"{d.id} {d.version}" for d in unmet) + " installed first"
    return None


def _entry(
    manifest: Manifest,
    current: Mapping[str, Any] | None,
    active: Mapping[str, str],
    core_version: str,
) -> CatalogEntryOut:
    reason = incompatibility(manifest, active, core_version)
    status = InstallStatus(current["status"]) if current else None
    return CatalogEntryOut(
        plugin_id=manifest.id,
        name=manifest.name,
        description=manifest.description,
        publisher=manifest.publisher,
        latest_version=manifest.version,
        installed_version=current["version"] if current else None,
        install_status=status,
        upgrade_available=(
            current is not None
            and status in INSTALLED
            and manifest.semver > Version.parse(current["version"])
        ),
        compatible=reason is None,
        incompatible_reason=reason,
    )


def _unpublished(manifest: Manifest, current: Mapping[str, Any]) -> CatalogEntryOut:
    return CatalogEntryOut(
        plugin_id=manifest.id,
        name=manifest.name,
        description=manifest.description,
        publisher=manifest.publisher,
        latest_version=None,
        installed_version=current["version"],
        install_status=InstallStatus(current["status"]),
        compatible=False,
        incompatible_reason="no version is published any more",
    )
