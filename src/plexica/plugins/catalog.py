"""The plugin catalog (operator): versions registered, published and deprecated, checked against
the core and each other."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from plexica import __version__
from plexica.audit import service as audit_service
from plexica.flags import service as flags_service
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import (
    IncompatibleError,
    InvalidStateError,
    MigrationFile,
    MigrationRefusedError,
    PluginNotFoundError,
    PluginVersionOut,
    VersionStatus,
)
from plexica_sdk.errors import ConflictError
from plexica_sdk.manifest import Dependency, Manifest, parse_manifest, stored_manifest
from plexica_sdk.semver import Version, VersionRange

log = structlog.get_logger("plexica.plugins")

# A migration is run as the plugin's role; these would let it leave that role.
_ROLE_SWITCH = re.compile(
    r"\b(RESET\s+(ROLE|ALL|SESSION\s+AUTHORIZATION)|SET\s+(LOCAL\s+|SESSION\s+)?ROLE"
    r"|SESSION\s+AUTHORIZATION|SECURITY\s+DEFINER)\b",
    re.IGNORECASE,
)


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
    session: AsyncSession,
    manifest_doc: dict[str, Any],
    migrations: list[MigrationFile],
    *,
    actor: str = "platform",
) -> PluginVersionOut:
    """Add a plugin version to the catalog after checking it against the core and catalog."""
    manifest = parse_manifest(manifest_doc)
    if await versions_repo.get_version(session, manifest.id, manifest.version):
        raise ConflictError(
            f"{manifest.id} {manifest.version} is already registered", code="version_exists"
        )
    for m in migrations:
        _check_migration_text(m)
    catalog = await catalog_manifests(session)
    check_compatibility(manifest, catalog)
    await versions_repo.insert_version(
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
    await audit_service.record(
        session, actor, "plugin.registered", None, f"plugin:{manifest.id}",
        after={"version": manifest.version, "name": manifest.name},
    )  # fmt: skip
    log.info("plugin_registered", plugin=manifest.id, version=manifest.version)
    row = await versions_repo.get_version(session, manifest.id, manifest.version)
    assert row is not None
    return _version_out(row)


async def catalog_manifests(session: AsyncSession) -> dict[str, list[Manifest]]:
    out: dict[str, list[Manifest]] = {}
    for row in _sorted(await versions_repo.list_versions(session)):
        if row["status"] != VersionStatus.DEPRECATED:
            out.setdefault(row["plugin_id"], []).append(stored_manifest(row["manifest"]))
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


def unmet_dependencies(manifest: Manifest, active: Mapping[str, str]) -> list[Dependency]:
    """Required dependencies not active in a tenant at a version in range; ``active`` maps each
    plugin active there to its version."""
    return [
        d
        for d in manifest.dependencies
        if not d.optional
        and not (d.id in active and VersionRange.parse(d.version).contains(active[d.id]))
    ]


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
    session: AsyncSession,
    plugin_id: str,
    version: str,
    status: VersionStatus,
    *,
    actor: str = "platform",
) -> PluginVersionOut:
    row = await versions_repo.get_version(session, plugin_id, version)
    if row is None:
        raise PluginNotFoundError(f"no plugin {plugin_id} {version} in the catalog")
    if status == VersionStatus.PUBLISHED and row["status"] == VersionStatus.DEPRECATED:
        raise InvalidStateError(f"{plugin_id} {version} is deprecated")
    await versions_repo.set_version_status(session, plugin_id, version, status)
    if status != row["status"]:
        await audit_service.record(
            session, actor, f"plugin.{status.value}", None, f"plugin:{plugin_id}",
            before={"version": version, "status": str(row["status"])},
            after={"version": version, "status": status.value},
        )  # fmt: skip
    row = await versions_repo.get_version(session, plugin_id, version)
    assert row is not None
    return _version_out(row)


async def list_versions(
    session: AsyncSession, plugin_id: str | None = None, *, published_only: bool = False
) -> list[PluginVersionOut]:
    rows = _sorted(await versions_repo.list_versions(session, plugin_id))
    if published_only:
        rows = [r for r in rows if r["status"] == VersionStatus.PUBLISHED]
    return [_version_out(r) for r in rows]


async def pick_version(
    session: AsyncSession, plugin_id: str, version: str | None
) -> tuple[Manifest, list[MigrationFile]]:
    if version is None:
        published = [
            r
            for r in _sorted(await versions_repo.list_versions(session, plugin_id))
            if r["status"] == VersionStatus.PUBLISHED
        ]
        if not published:
            raise PluginNotFoundError(f"no published version of plugin {plugin_id}")
        row = published[-1]
    else:
        found = await versions_repo.get_version(session, plugin_id, version)
        if found is None or found["status"] != VersionStatus.PUBLISHED:
            raise PluginNotFoundError(f"no published version {version} of plugin {plugin_id}")
        row = found
    return (
        stored_manifest(row["manifest"]),
        [MigrationFile.model_validate(m) for m in row["migrations"]],
    )


def _check_migration_text(migration: MigrationFile) -> None:
    if _ROLE_SWITCH.search(migration.sql):
        raise MigrationRefusedError(
            f"migration {migration.name} changes the database role, which is not allowed",
            details={"migration": migration.name},
        )


async def upstream_timeouts(session: AsyncSession) -> dict[str, float]:
    """Each plugin's upstream timeout at the edge: the longest its catalog versions ask for
    (the version installed differs per tenant; the route is one)."""
    return {
        plugin_id: max(m.api.upstream_timeout_seconds for m in manifests)
        for plugin_id, manifests in (await catalog_manifests(session)).items()
    }
