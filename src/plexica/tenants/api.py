"""Routes: operators manage tenants under /v1/tenants; a tenant's own routes under /v1/tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Response, status

from plexica.kit.security import OperatorDep
from plexica.tenants.context import TenantDep, TenantServiceDep, TenantSessionDep
from plexica.tenants.schemas import (
    CurrentTenant,
    ProvisioningStatus,
    Setting,
    SettingValue,
    State,
    Tenant,
    TenantCreate,
    TenantPage,
    TenantSteps,
)

TenantKey = Annotated[str, Path(max_length=200, description="The tenant's id or slug.")]

operator_router = APIRouter(prefix="/v1/tenants", tags=["tenants"])
tenant_router = APIRouter(prefix="/v1/tenant", tags=["tenant"])

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
    _: OperatorDep,
    service: TenantServiceDep,
    response: Response,
    prefer: Annotated[str | None, Header(max_length=200)] = None,
) -> Tenant:
    if _respond_async(prefer):
        return _accepted(response, await service.start_create(body), "tenants/{id}/provisioning")
    return await service.create(body)


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
async def suspend_tenant(key: TenantKey, _: OperatorDep, service: TenantServiceDep) -> Tenant:
    return await service.suspend(key)


@operator_router.post(
    "/{key}/reactivate",
    summary="Reactivate a suspended tenant",
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
)
async def reactivate_tenant(key: TenantKey, _: OperatorDep, service: TenantServiceDep) -> Tenant:
    return await service.reactivate(key)


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
    _: OperatorDep,
    service: TenantServiceDep,
    response: Response,
    prefer: Annotated[str | None, Header(max_length=200)] = None,
) -> Tenant:
    if _respond_async(prefer):
        return _accepted(response, await service.start_retry(key), "provisioning")
    return await service.retry(key)


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
async def delete_tenant(key: TenantKey, _: OperatorDep, service: TenantServiceDep) -> Tenant:
    return await service.delete(key)


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


@tenant_router.put("/settings/{key}", summary="Set a setting")
async def put_setting(
    key: SettingKey,
    body: Annotated[SettingValue, Body()],
    session: TenantSessionDep,
    service: TenantServiceDep,
) -> Setting:
    return await service.put_setting(session, key, body.value)


@tenant_router.delete(
    "/settings/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a setting",
    responses={404: {"description": "setting_not_found"}},
)
async def delete_setting(
    key: SettingKey, session: TenantSessionDep, service: TenantServiceDep
) -> None:
    await service.delete_setting(session, key)
