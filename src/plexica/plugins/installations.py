"""A tenant's installations as the other domains read them: state, settings, the permissions,
pages and event subscriptions of its active plugins, and counts for the fleet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import (
    InstallationNotFoundError,
    InstallationOut,
    InstallStatus,
    InvalidSettingsError,
)
from plexica_sdk.auth import PermissionResolver
from plexica_sdk.manifest import Manifest, stored_manifest

_ABSENT = object()


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


def secret_settings(manifest: Manifest) -> frozenset[str]:
    """Settings the schema marks as secrets (``writeOnly``, or ``format: password``)."""
    props = manifest.settings_schema.get("properties", {})
    return frozenset(
        name
        for name, prop in props.items()
        if isinstance(prop, dict)
        and (prop.get("writeOnly") is True or prop.get("format") == "password")
    )


def settings_change(
    manifest: Manifest, old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The audit log's before and after of a settings change (ADR 0241): the settings without
    their secrets, and after them the names of every setting that changed, secrets included."""
    hidden = secret_settings(manifest)
    changed = sorted(
        k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT)
    )
    return (
        {"settings": {k: v for k, v in old.items() if k not in hidden}},
        {"settings": {k: v for k, v in new.items() if k not in hidden}, "changed": changed},
    )


async def get_installation(
    session: AsyncSession, tenant_id: UUID, plugin_id: str
) -> InstallationOut:
    row = await installs_repo.get_installation(session, tenant_id, plugin_id)
    if row is None:
        raise _not_installed(plugin_id)
    return _install_out(row)


async def list_installations(session: AsyncSession, tenant_id: UUID) -> list[InstallationOut]:
    return [_install_out(r) for r in await installs_repo.list_installations(session, tenant_id)]


async def is_active(session: AsyncSession, tenant_id: UUID, plugin_id: str) -> bool:
    row = await installs_repo.get_installation(session, tenant_id, plugin_id)
    return row is not None and row["status"] == InstallStatus.ACTIVE


async def permissions_for(
    session: AsyncSession, tenant_id: UUID | None, roles: frozenset[str]
) -> frozenset[str]:
    """Permissions the active plugins of a tenant grant by default to ``roles`` (for the
    identity domain's role → permission resolution)."""
    if tenant_id is None:
        return frozenset()
    granted: set[str] = set()
    for row in await installs_repo.list_installations(session, tenant_id, InstallStatus.ACTIVE):
        version = await versions_repo.get_version(session, row["plugin_id"], row["version"])
        if version is not None:
            granted |= stored_manifest(version["manifest"]).default_permissions(roles)
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
    for row in await installs_repo.list_installations(session, tenant_id, InstallStatus.ACTIVE):
        version = await versions_repo.get_version(session, row["plugin_id"], row["version"])
        if version is None:
            continue
        m = stored_manifest(version["manifest"])
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
    for row in await installs_repo.list_installations(session, tenant_id, InstallStatus.ACTIVE):
        version = await versions_repo.get_version(session, row["plugin_id"], row["version"])
        if version is None:
            continue
        consumes = stored_manifest(version["manifest"]).events.consumes
        if any(e.type == event_type for e in consumes):
            out.append(row["plugin_id"])
    return out


def _not_installed(plugin_id: str) -> InstallationNotFoundError:
    return InstallationNotFoundError(f"plugin {plugin_id} is not installed in this tenant")


async def tenant_by_slug(session: AsyncSession, slug: str) -> TenantRef | None:
    tenant_id = await installs_repo.tenant_id_by_slug(session, slug)
    return TenantRef(tenant_id, slug, slug, "") if tenant_id else None


async def routed_ids(session: AsyncSession) -> list[str]:
    """Plugins the gateway routes: installed (active or disabled) in at least one tenant, so a
    route appears with the first install on the platform and goes with the last removal."""
    return await installs_repo.installed_plugin_ids(session)


async def installation_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Installations by (plugin, state), every tenant's."""
    return await installs_repo.count_installations(session)
