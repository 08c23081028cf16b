"""``/v1/sso``: a tenant admin connects the company's OpenID Connect provider to the built-in
provider (ADR 0246). With Keycloak, its identity brokering is the place: 409."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request, Response

from plexica.audit import service as audit
from plexica.identity import sso
from plexica.identity.api import ReadUsers, WriteUsers, _db, _realm_of
from plexica.identity.oidc_requests import base_url
from plexica.identity.schemas import SsoProvider, SsoProviderIn
from plexica.settings import Settings
from plexica_sdk.context import Principal
from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError

router = APIRouter(prefix="/v1/sso", tags=["identity"])


class SsoManagedByProviderError(ConflictError):
    code = "sso_managed_by_provider"

    def __init__(self) -> None:
        super().__init__("company sign-in is set up as identity brokering in Keycloak")


class ProviderRefusedError(PlexicaError):
    """422 ``validation_error`` on the field at fault, as a body refused by its schema."""

    status, code = 422, "validation_error"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(
            "request validation failed",
            details=[{"loc": ["body", field], "msg": reason, "type": "sso_provider"}],
        )


def _tenant_realm(request: Request, admin: Principal) -> str:
    settings: Settings = request.app.state.settings
    if settings.keycloak_url is not None:
        raise SsoManagedByProviderError
    if admin.tenant_id is None:
        raise NotFoundError("company sign-in is for tenants")
    return _realm_of(admin)


@router.get("", summary="The tenant's company sign-in provider")
async def get_provider(request: Request, admin: ReadUsers) -> SsoProvider:
    realm = _tenant_realm(request, admin)
    async with _db(request).session() as session:
        found = await sso.describe(session, realm, base_url(request))
    if found is None:
        raise NotFoundError("no company sign-in is connected")
    return found


@router.put(
    "",
    summary="Connect or change the company's OpenID Connect provider (its discovery document "
    "is read first; the client secret is write-only)",
    responses={422: {"description": "The provider cannot be reached or names another issuer"}},
)
async def put_provider(request: Request, admin: WriteUsers, body: SsoProviderIn) -> SsoProvider:
    realm = _tenant_realm(request, admin)
    async with _db(request).session() as session, httpx.AsyncClient() as http:
        before = await sso.describe(session, realm, base_url(request))
        try:
            await sso.configure(
                session, http, realm, body, local=sso.local_allowed(request.app.state.settings)
            )
        except sso.SsoFailure as exc:
            field = "client_secret" if exc.status == 422 else "issuer"
            raise ProviderRefusedError(field, exc.reason) from None
        after = await sso.describe(session, realm, base_url(request))
        assert after is not None
        shown = {"display_name", "issuer", "client_id", "domains", "default_role", "required"}
        changed = {**after.model_dump(include=shown), "secret_set": body.client_secret is not None}
        await audit.record(
            session, admin.actor, "identity.sso.updated", admin.tenant_id, f"realm:{realm}",
            before=before.model_dump(include=shown) if before else None, after=changed,
        )  # fmt: skip
    return after


@router.delete("", status_code=204, summary="Disconnect the company provider")
async def delete_provider(request: Request, admin: WriteUsers) -> Response:
    realm = _tenant_realm(request, admin)
    async with _db(request).session() as session:
        if not await sso.disconnect(session, realm):
            raise NotFoundError("no company sign-in is connected")
        await audit.record(
            session, admin.actor, "identity.sso.removed", admin.tenant_id, f"realm:{realm}"
        )
    return Response(status_code=204)
