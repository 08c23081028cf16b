"""Routes: the catalog (``/v1/plugins``, operator), installations per tenant
(``/v1/tenants/{tenant_id}/plugins``, the tenant's admin or an operator) and the catalog as that
tenant sees it (``/v1/tenants/{tenant_id}/catalog``, the same callers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import request_db
from plexica.kit.provisioning import TenantRef
from plexica.kit.security import OperatorDep, PrincipalDep
from plexica.kit.state import core_state, started
from plexica.plugins import service
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.schemas import (
    CatalogEntryOut,
    InstallationOut,
    InstallRequest,
    PluginVersionOut,
    RegisterRequest,
    SettingsRequest,
    UpgradeRequest,
    VersionStatus,
)
from plexica_sdk.context import TENANT_ADMIN, Principal
from plexica_sdk.errors import NotFoundError

TenantLookup = Callable[[UUID], Awaitable[TenantRef | None]]


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    db = request_db(request)
    async with db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


def _installer(request: Request) -> service.Installer:
    return started(core_state(request).plugin_installer, "plugin_installer")


InstallerDep = Annotated[service.Installer, Depends(_installer)]


async def _tenant(request: Request, tenant_id: UUID, principal: PrincipalDep) -> TenantRef:
    """The tenant in the path, if the caller administers it or operates the platform.

    Anyone else gets the same 404 whether or not the tenant exists."""
    if principal.tenant_id == tenant_id and TENANT_ADMIN in principal.roles:
        assert principal.tenant_slug is not None
        return TenantRef(tenant_id, principal.tenant_slug, principal.tenant_slug, "")
    if _own_plugin_service(request, principal) and principal.tenant_id in (None, tenant_id):
        slug = principal.tenant_slug
        if slug is None:
            db0 = request_db(request)
            async with db0.session() as s:
                slug = await installs_repo.tenant_slug(s, tenant_id)
        if slug is not None:
            return TenantRef(tenant_id, slug, slug, "")
    if principal.is_operator:
        lookup = core_state(request).plugin_tenants
        if lookup is not None:
            found = await lookup(tenant_id)
            if found is not None:
                return found
        db = request_db(request)
        async with db.session() as s:
            slug = await installs_repo.tenant_slug(s, tenant_id)
        if slug is not None:
            return TenantRef(tenant_id, slug, slug, "")
    raise NotFoundError("no such tenant")


def _own_plugin_service(request: Request, principal: Principal) -> bool:
    """A plugin's service token (client ``plugin-<id>``) may read its own installations."""
    plugin_id = request.path_params.get("plugin_id")
    return (
        principal.is_service
        and request.method == "GET"
        and plugin_id is not None
        and principal.client_id == f"plugin-{plugin_id}"
    )


TenantDep = Annotated[TenantRef, Depends(_tenant)]


def catalog_router() -> APIRouter:
    router = APIRouter(prefix="/v1/plugins", tags=["plugins"])

    @router.get("", summary="Plugin versions in the catalog (tenants see published ones)")
    async def list_plugins(session: SessionDep, principal: PrincipalDep) -> list[PluginVersionOut]:
        return await service.list_versions(session, published_only=not principal.is_operator)

    @router.post("", status_code=201, summary="Register a plugin version from its manifest")
    async def register(
        body: RegisterRequest, session: SessionDep, operator: OperatorDep
    ) -> PluginVersionOut:
        return await service.register(session, body.manifest, body.migrations, actor=operator.actor)

    @router.get("/{plugin_id}/versions", summary="Versions of one plugin")
    async def versions(
        plugin_id: str, session: SessionDep, principal: PrincipalDep
    ) -> list[PluginVersionOut]:
        found = await service.list_versions(
            session, plugin_id, published_only=not principal.is_operator
        )
        if not found:
            raise NotFoundError(f"no plugin {plugin_id} in the catalog", code="plugin_not_found")
        return found

    @router.post("/{plugin_id}/versions/{version}/publish", summary="Make a version installable")
    async def publish(
        plugin_id: str, version: str, session: SessionDep, operator: OperatorDep
    ) -> PluginVersionOut:
        return await service.set_status(
            session, plugin_id, version, VersionStatus.PUBLISHED, actor=operator.actor
        )

    @router.post("/{plugin_id}/versions/{version}/deprecate", summary="Stop new installs")
    async def deprecate(
        plugin_id: str, version: str, session: SessionDep, operator: OperatorDep
    ) -> PluginVersionOut:
        return await service.set_status(
            session, plugin_id, version, VersionStatus.DEPRECATED, actor=operator.actor
        )

    return router


def tenant_catalog_router() -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}/catalog", tags=["plugins"])

    @router.get("", summary="Published plugins with this tenant's install state (ADR 0241)")
    async def tenant_catalog(tenant: TenantDep, session: SessionDep) -> list[CatalogEntryOut]:
        return await service.tenant_catalog(session, tenant.id)

    return router


async def _fresh_permissions(request: Request) -> AsyncIterator[None]:
    """A changed installation changes what the tenant's roles may do: the verifier's cache of
    permissions is dropped so that the next request (the shell's navigation) sees it."""
    yield
    if request.method != "GET":
        cache = getattr(core_state(request).verifier, "permissions", None)
        invalidate = getattr(cache, "invalidate", None)
        if callable(invalidate):
            invalidate()


def installations_router() -> APIRouter:
    router = APIRouter(
        prefix="/v1/tenants/{tenant_id}/plugins",
        tags=["plugins"],
        dependencies=[Depends(_fresh_permissions, scope="function")],
    )

    @router.get("", summary="Plugins of a tenant")
    async def list_installed(tenant: TenantDep, session: SessionDep) -> list[InstallationOut]:
        return await service.list_installations(session, tenant.id)

    @router.post("", status_code=201, summary="Install a plugin into the tenant")
    async def install(
        body: InstallRequest, tenant: TenantDep, installer: InstallerDep, principal: PrincipalDep
    ) -> InstallationOut:
        return await installer.install(
            tenant, body.plugin_id, body.version, body.settings, actor=principal.actor
        )

    @router.get("/{plugin_id}", summary="One installation")
    async def get(plugin_id: str, tenant: TenantDep, session: SessionDep) -> InstallationOut:
        return await service.get_installation(session, tenant.id, plugin_id)

    @router.post("/{plugin_id}/enable", summary="Let traffic reach the plugin again")
    async def enable(
        plugin_id: str, tenant: TenantDep, installer: InstallerDep, principal: PrincipalDep
    ) -> InstallationOut:
        return await installer.set_enabled(tenant, plugin_id, True, actor=principal.actor)

    @router.post("/{plugin_id}/disable", summary="Stop traffic and events, keep data")
    async def disable(
        plugin_id: str, tenant: TenantDep, installer: InstallerDep, principal: PrincipalDep
    ) -> InstallationOut:
        return await installer.set_enabled(tenant, plugin_id, False, actor=principal.actor)

    @router.post("/{plugin_id}/upgrade", summary="Upgrade to a newer published version")
    async def upgrade(
        plugin_id: str,
        body: UpgradeRequest,
        tenant: TenantDep,
        installer: InstallerDep,
        principal: PrincipalDep,
    ) -> InstallationOut:
        return await installer.upgrade(tenant, plugin_id, body.version, actor=principal.actor)

    @router.put("/{plugin_id}/settings", summary="Replace the per-tenant settings")
    async def settings(
        plugin_id: str,
        body: SettingsRequest,
        tenant: TenantDep,
        installer: InstallerDep,
        principal: PrincipalDep,
    ) -> InstallationOut:
        return await installer.update_settings(
            tenant, plugin_id, body.settings, actor=principal.actor
        )

    @router.delete("/{plugin_id}", summary="Uninstall (data kept for the retention window)")
    async def uninstall(
        plugin_id: str,
        tenant: TenantDep,
        installer: InstallerDep,
        principal: PrincipalDep,
        purge: Annotated[bool, Query(description="Drop the plugin's data now.")] = False,
    ) -> Response:
        out = await installer.uninstall(tenant, plugin_id, purge=purge, actor=principal.actor)
        if out is None:
            return Response(status_code=204)
        return Response(out.model_dump_json(), media_type="application/json")

    return router


def ui_router() -> APIRouter:
    router = APIRouter(prefix="/v1/tenant/ui", tags=["plugins"])

    @router.get("", summary="Pages and slots of the caller's tenant's active plugins")
    async def contributions(principal: PrincipalDep, session: SessionDep) -> list[dict[str, Any]]:
        if principal.tenant_id is None:
            raise NotFoundError("no tenant in the caller's token")
        out = await service.ui_contributions(session, principal.tenant_id)
        for item in out:
            # A page the caller may not open is not offered in its navigation.
            for key in ("pages", "slots"):
                item[key] = [
                    p
                    for p in item[key]
                    if p.get("permission") is None or principal.has_permission(p["permission"])
                ]
        return out

    return router
