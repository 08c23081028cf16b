"""Routes: operators manage tenants under /v1/tenants; a tenant's own routes under /v1/tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Header, Path, Query, Request, status
from fastapi.responses import Response, StreamingResponse

from plexica.audit import service as audit
from plexica.identity.first_admin import FirstAdmin
from plexica.identity.schemas import AdminInvite, Invite
from plexica.kit.security import OperatorDep, PrincipalDep, require_permission
from plexica.kit.state import configured, core_state
from plexica.storage.service import Scope, StorageService
from plexica.tenants import first_admin
from plexica.tenants.context import TenantDep, TenantServiceDep, TenantSessionDep
from plexica.tenants.health import fleet_health
from plexica.tenants.schemas import (
    LOGO_MAX_BYTES,
    LOGO_TYPES,
    Branding,
    BrandingUpdate,
    CurrentTenant,
    FleetHealth,
    ProvisioningStatus,
    Setting,
    SettingValue,
    State,
    Tenant,
    TenantCreate,
    TenantPage,
    TenantSteps,
)
from plexica.tenants.settings import (
    BRAND_COLOUR,
    BRAND_LOGO,
    LOGO_KEY,
    LogoTooLargeError,
    check_logo,
)
from plexica_sdk.context import Principal
from plexica_sdk.errors import ForbiddenError, NotFoundError

TenantKey = Annotated[str, Path(max_length=200, description="The tenant's id or slug.")]

operator_router = APIRouter(prefix="/v1/tenants", tags=["tenants"])
tenant_router = APIRouter(prefix="/v1/tenant", tags=["tenant"])
# Not under /v1/tenants: there "health" would shadow a tenant of that slug.
health_router = APIRouter(prefix="/v1/tenant-health", tags=["tenants"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "unauthenticated"},
    403: {"description": "not a platform operator"},
}
_NOT_FOUND: dict[int | str, dict[str, str]] = {404: {"description": "tenant_not_found"}}
_CONFLICT: dict[int | str, dict[str, str]] = {409: {"description": "illegal_transition"}}


@operator_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant (runs the provisioning saga)",
    responses={
        **_ERRORS,
        202: {"description": "with `Prefer: respond-async`: provisioning runs; follow Location"},
        409: {"description": "tenant_exists"},
        422: {"description": "invalid_slug"},
        502: {"description": "provisioning_failed: the tenant is left failed"},
    },
)
async def create_tenant(
    body: TenantCreate,
    operator: OperatorDep,
    service: TenantServiceDep,
    response: Response,
    prefer: Annotated[str | None, Header(max_length=200)] = None,
) -> Tenant:
    if _respond_async(prefer):
        return _accepted(
            response, await service.start_create(body, actor=operator.actor),
            "tenants/{id}/provisioning",
        )  # fmt: skip
    return await service.create(body, actor=operator.actor)


def _respond_async(prefer: str | None) -> bool:
    return bool(prefer) and "respond-async" in {p.strip().lower() for p in str(prefer).split(",")}


def _accepted(response: Response, tenant: Tenant, location: str) -> Tenant:
    response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Preference-Applied"] = "respond-async"
    response.headers["Location"] = location.format(id=tenant.id)
    return tenant


@operator_router.get("", summary="List tenants", responses=_ERRORS)
async def list_tenants(
    _: OperatorDep,
    service: TenantServiceDep,
    state: Annotated[State | None, Query(description="Only tenants in this state.")] = None,
    after: Annotated[str | None, Query(max_length=63, description="Slug to start after.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TenantPage:
    return await service.list_tenants(state=state, after=after, limit=limit)


@operator_router.get("/{key}", summary="Get a tenant", responses={**_ERRORS, **_NOT_FOUND})
async def get_tenant(key: TenantKey, _: OperatorDep, service: TenantServiceDep) -> Tenant:
    return await service.get(key)


@operator_router.get(
    "/{key}/steps",
    summary="Provisioning and deletion steps and state history",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def tenant_steps(key: TenantKey, _: OperatorDep, service: TenantServiceDep) -> TenantSteps:
    return await service.steps_of(key)


@operator_router.get(
    "/{key}/provisioning",
    summary="Progress of the provisioning saga: steps, the running one, the failure",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def provisioning_status(
    key: TenantKey, _: OperatorDep, service: TenantServiceDep
) -> ProvisioningStatus:
    return await service.provisioning_status(key)


@operator_router.post(
    "/{key}/suspend", summary="Suspend a tenant", responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT}
)
async def suspend_tenant(
    key: TenantKey, operator: OperatorDep, service: TenantServiceDep
) -> Tenant:
    return await service.suspend(key, actor=operator.actor)


@operator_router.post(
    "/{key}/reactivate",
    summary="Reactivate a suspended tenant",
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
)
async def reactivate_tenant(
    key: TenantKey, operator: OperatorDep, service: TenantServiceDep
) -> Tenant:
    return await service.reactivate(key, actor=operator.actor)


@operator_router.post(
    "/{key}/retry",
    summary="Retry the provisioning of a failed tenant",
    responses={
        **_ERRORS, **_NOT_FOUND, **_CONFLICT,
        202: {"description": "with `Prefer: respond-async`: provisioning runs; follow Location"},
    },
)  # fmt: skip
async def retry_tenant(
    key: TenantKey,
    operator: OperatorDep,
    service: TenantServiceDep,
    response: Response,
    prefer: Annotated[str | None, Header(max_length=200)] = None,
) -> Tenant:
    if _respond_async(prefer):
        return _accepted(response, await service.start_retry(key, actor=operator.actor),
                         "provisioning")  # fmt: skip
    return await service.retry(key, actor=operator.actor)


@operator_router.delete(
    "/{key}",
    summary="Delete a tenant and all its resources (resumable: call again after a failure)",
    responses={
        **_ERRORS,
        **_NOT_FOUND,
        **_CONFLICT,
        502: {"description": "deletion_incomplete: still pending_deletion"},
    },
)
async def delete_tenant(key: TenantKey, operator: OperatorDep, service: TenantServiceDep) -> Tenant:
    return await service.delete(key, actor=operator.actor)


def _first_admin(request: Request) -> FirstAdmin:
    services = configured(
        core_state(request).services, "tenant services are not started on this process"
    )
    admin: FirstAdmin = services.first_admin
    return admin


FirstAdminDep = Annotated[FirstAdmin, Depends(_first_admin)]


@operator_router.get(
    "/{key}/admin-invite",
    summary="The first admin's invitation: sent, expired or accepted",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def admin_invite(
    key: TenantKey, _: OperatorDep, service: TenantServiceDep, admin: FirstAdminDep
) -> AdminInvite:
    return await first_admin.admin_invite(service, admin, key)


@operator_router.post(
    "/{key}/admin-invite",
    summary="Send the first admin's invitation again (the previous link stops working)",
    responses={
        **_ERRORS, **_NOT_FOUND,
        409: {"description": "tenant_not_active, or invite_not_pending: already accepted"},
        502: {"description": "mail_rejected"}, 503: {"description": "mail_unavailable"},
    },
)  # fmt: skip
async def resend_admin_invite(
    key: TenantKey, operator: OperatorDep, service: TenantServiceDep, admin: FirstAdminDep
) -> Invite:
    return await first_admin.invite_admin_again(service, admin, key, operator.actor)


@tenant_router.get("", summary="The caller's tenant")
async def current(tenant: TenantDep) -> CurrentTenant:
    return CurrentTenant(id=tenant.id, slug=tenant.slug, name=tenant.name, state=tenant.state)


SettingKey = Annotated[str, Path(max_length=100)]


@tenant_router.get("/settings", summary="The tenant's settings")
async def list_settings(session: TenantSessionDep, service: TenantServiceDep) -> list[Setting]:
    return await service.list_settings(session)


@tenant_router.get(
    "/settings/{key}", summary="One setting", responses={404: {"description": "setting_not_found"}}
)
async def get_setting(
    key: SettingKey, session: TenantSessionDep, service: TenantServiceDep
) -> Setting:
    return await service.get_setting(session, key)


SETTINGS_WRITE = "tenant:settings:write"
SettingsWriterDep = Annotated[Principal, Depends(require_permission(SETTINGS_WRITE))]


def _guard_branding(principal: Principal, key: str) -> None:
    # The shell shows branding.* to every user of the tenant: only its admins set them.
    if key.startswith("branding.") and not principal.has_permission(SETTINGS_WRITE):
        raise ForbiddenError(f"missing permission {SETTINGS_WRITE}")


@tenant_router.put("/settings/{key}", summary="Set a setting")
async def put_setting(
    key: SettingKey,
    body: Annotated[SettingValue, Body()],
    session: TenantSessionDep,
    service: TenantServiceDep,
    principal: PrincipalDep,
) -> Setting:
    _guard_branding(principal, key)
    return await service.put_setting(session, key, body.value)


@tenant_router.delete(
    "/settings/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a setting",
    responses={404: {"description": "setting_not_found"}},
)
async def delete_setting(
    key: SettingKey, session: TenantSessionDep, service: TenantServiceDep, principal: PrincipalDep
) -> None:
    _guard_branding(principal, key)
    await service.delete_setting(session, key)


# -- branding: what the web shell shows on every page of the tenant ------------------------------


def _storage(request: Request) -> StorageService:
    return configured(core_state(request).storage, "storage is not configured on this service")


@tenant_router.get("/branding", summary="Name, primary colour and logo of the caller's tenant")
async def get_branding(
    tenant: TenantDep, session: TenantSessionDep, service: TenantServiceDep
) -> Branding:
    return await service.branding(session, tenant)


@tenant_router.patch(
    "/branding",
    summary="Rename the tenant and/or set its primary colour (tenant admins)",
    responses={403: {"description": "missing permission tenant:settings:write"}},
)
async def update_branding(
    body: BrandingUpdate,
    *,
    tenant: TenantDep,
    principal: SettingsWriterDep,
    session: TenantSessionDep,
    service: TenantServiceDep,
    background: BackgroundTasks,
) -> Branding:
    before = await service.branding(session, tenant)
    if body.name is not None and body.name != tenant.name:
        await service.rename(session, tenant, body.name)
        # After the commit (background tasks run once the session is closed): a reader in
        # between would otherwise cache the old name again.
        background.add_task(service.cache.invalidate, tenant.id)
    if body.primary_color is not None:
        await service.put_setting(session, BRAND_COLOUR, body.primary_color.lower())
    after = await service.branding(
        session, tenant.model_copy(update={"name": body.name or tenant.name})
    )
    if after != before:
        await audit.record(
            session, principal.actor, "tenant.branding.updated", tenant.id,
            f"tenant:{tenant.id}", before.model_dump(mode="json"), after.model_dump(mode="json"),
        )  # fmt: skip
    return after


@tenant_router.put(
    "/branding/logo",
    summary="Upload the tenant's logo (PNG, JPEG, GIF or WebP, at most 512 KiB; tenant admins)",
    responses={
        413: {"description": "logo_too_large"},
        415: {"description": "unsupported_logo_type"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in sorted(LOGO_TYPES)
            },
        }
    },
)
async def put_logo(
    request: Request,
    tenant: TenantDep,
    principal: SettingsWriterDep,
    session: TenantSessionDep,
    service: TenantServiceDep,
) -> Branding:
    storage = _storage(request)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > LOGO_MAX_BYTES:
            raise LogoTooLargeError(
                f"the logo is larger than {LOGO_MAX_BYTES // 1024} KiB",
                details={"max_bytes": LOGO_MAX_BYTES},
            )
    content_type = check_logo(bytes(data))
    scope = Scope.of_tenant(tenant.id, tenant.slug)

    async def body() -> AsyncIterator[bytes]:
        yield bytes(data)

    plan = await storage.plan_upload(session, scope, LOGO_KEY, declared_size=len(data))
    received = await storage.receive(scope, plan, content_type, body())
    info = await storage.commit(session, scope, received)
    before = await service.branding(session, tenant)
    logo = {"content_type": content_type, "size": info.size, "etag": info.etag}
    await service.put_setting(session, BRAND_LOGO, logo)
    await audit.record(
        session, principal.actor, "tenant.branding.logo_uploaded", tenant.id,
        f"tenant:{tenant.id}", before.logo and before.logo.model_dump(), logo,
    )  # fmt: skip
    return await service.branding(session, tenant)


@tenant_router.get(
    "/branding/logo",
    summary="The tenant's logo",
    response_class=Response,
    responses={
        200: {
            "description": "The logo",
            "content": {
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in sorted(LOGO_TYPES)
            },
        },
        404: {"description": "not_found: no logo"},
    },
)
async def get_logo(
    request: Request, tenant: TenantDep, session: TenantSessionDep, service: TenantServiceDep
) -> Response:
    branding = await service.branding(session, tenant)
    if branding.logo is None:
        raise NotFoundError("this tenant has no logo")
    info, chunks = await _storage(request).open(Scope.of_tenant(tenant.id, tenant.slug), LOGO_KEY)
    headers = {
        "Content-Length": str(info.size),
        "ETag": f'"{info.etag}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
        "Cache-Control": "private, max-age=300",
    }
    return StreamingResponse(chunks, media_type=branding.logo.content_type, headers=headers)


@tenant_router.delete(
    "/branding/logo", status_code=status.HTTP_204_NO_CONTENT, summary="Remove the tenant's logo"
)
async def delete_logo(
    request: Request,
    tenant: TenantDep,
    principal: SettingsWriterDep,
    session: TenantSessionDep,
    service: TenantServiceDep,
) -> None:
    before = await service.branding(session, tenant)
    if before.logo is None:
        raise NotFoundError("this tenant has no logo")
    await service.delete_setting(session, BRAND_LOGO)
    await _storage(request).delete(session, Scope.of_tenant(tenant.id, tenant.slug), LOGO_KEY)
    await audit.record(
        session, principal.actor, "tenant.branding.logo_removed", tenant.id,
        f"tenant:{tenant.id}", before.logo.model_dump(), None,
    )  # fmt: skip


@health_router.get("", summary="Every tenant's requests, errors, P95, storage, events, sign-in",
                   responses=_ERRORS)  # fmt: skip
async def tenant_health(request: Request, _: OperatorDep, service: TenantServiceDep) -> FleetHealth:
    endpoints = core_state(request).plugin_endpoints
    remote = {slug: url for slug, url in endpoints.items() if isinstance(url, str)}
    async with service.db.session() as session:
        return await fleet_health(session, remote)
