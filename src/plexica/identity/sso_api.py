"""``/v1/sso``: a tenant admin connects the company's OpenID Connect provider: to the built-in
provider (ADR 0246), or with Keycloak as an identity provider of the tenant's realm, Keycloak's
identity brokering (ADR 0247)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import sso
from plexica.identity.api import ReadUsers, WriteUsers, _realm_of
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_signin import COMPANY_IDP
from plexica.identity.oidc_requests import base_url
from plexica.identity.schemas import SsoProvider, SsoProviderIn
from plexica.kit.db import request_db
from plexica.kit.state import core_state
from plexica_sdk.context import Principal
from plexica_sdk.errors import NotFoundError, PlexicaError

router = APIRouter(prefix="/v1/sso", tags=["identity"])
_SHOWN = {
    "display_name", "protocol", "issuer", "client_id", "metadata_url", "domains", "default_role",
    "required",
}  # fmt: skip


class ProviderRefusedError(PlexicaError):
    """422 ``validation_error`` on the field at fault, as a body refused by its schema."""

    status, code = 422, "validation_error"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(
            "request validation failed",
            details=[{"loc": ["body", field], "msg": reason, "type": "sso_provider"}],
        )


@contextmanager
def _refused_on(field: str) -> Iterator[None]:
    """The company's provider could not be read: a 422 on the field that names it."""
    try:
        yield
    except sso.SsoFailure as exc:
        raise ProviderRefusedError(field, exc.reason) from None


def _local(request: Request) -> bool:
    return sso.local_allowed(core_state(request).settings)


def _tenant_realm(admin: Principal) -> str:
    if admin.tenant_id is None:
        raise NotFoundError("company sign-in is for tenants")
    return _realm_of(admin)


def _keycloak(request: Request) -> KeycloakAdapter | None:
    identity = core_state(request).identity
    return identity if isinstance(identity, KeycloakAdapter) else None


async def _brokered(request: Request, kc: KeycloakAdapter, realm: str) -> SsoProvider | None:
    """The realm's company identity provider in Keycloak, as the built-in one is shown."""
    found = await kc.company_sign_in(realm)
    if found is None:
        return None
    settings = core_state(request).settings
    stamp = found.pop("updated_at")
    issuer = f"{settings.issuer_base_url}/realms/{realm}"
    return SsoProvider(
        **found,
        entity_id=issuer if found["protocol"] == "saml" else None,
        redirect_uri=f"{issuer}/broker/{COMPANY_IDP}/endpoint",
        updated_at=datetime.fromisoformat(stamp) if stamp else datetime.fromtimestamp(0, UTC),
    )


async def _described(request: Request, realm: str) -> SsoProvider | None:
    kc = _keycloak(request)
    if kc is not None:
        return await _brokered(request, kc, realm)
    async with request_db(request).session() as session:
        return await sso.describe(session, realm, base_url(request))


@router.get("", summary="The tenant's company sign-in provider")
async def get_provider(request: Request, admin: ReadUsers) -> SsoProvider:
    found = await _described(request, _tenant_realm(admin))
    if found is None:
        raise NotFoundError("no company sign-in is connected")
    return found


@router.put(
    "",
    summary="Connect or change the company's OpenID Connect provider (its discovery document "
    "is read first; the client secret is write-only) or, with Keycloak, its SAML provider",
    responses={422: {"description": "The provider cannot be reached or names another issuer"}},
)
async def put_provider(request: Request, admin: WriteUsers, body: SsoProviderIn) -> SsoProvider:
    realm = _tenant_realm(admin)
    kc = _keycloak(request)
    if kc is not None:
        before = await _brokered(request, kc, realm)
        await _broker(kc, realm, body, before=before, local=_local(request))
        after = await _brokered(request, kc, realm)
        async with request_db(request).session() as session:
            await _audit_put(session, admin, realm, body, before=before, after=after)
    elif body.protocol == "saml":
        raise ProviderRefusedError("protocol", "SAML needs Keycloak as the identity provider")
    else:
        async with request_db(request).session() as session, httpx.AsyncClient() as http:
            before = await sso.describe(session, realm, base_url(request))
            try:
                await sso.configure(session, http, realm, body, local=_local(request))
            except sso.SsoFailure as exc:
                field = "client_secret" if exc.status == 422 else "issuer"
                raise ProviderRefusedError(field, exc.reason) from None
            after = await sso.describe(session, realm, base_url(request))
            await _audit_put(session, admin, realm, body, before=before, after=after)
    assert after is not None
    return after


async def _broker(
    kc: KeycloakAdapter,
    realm: str,
    body: SsoProviderIn,
    *,
    before: SsoProvider | None,
    local: bool,
) -> None:
    """The company's provider checked (its discovery document or SAML metadata read), then set
    up as the realm's identity provider. The secret Keycloak keeps is kept for the same issuer
    and client only (never sent elsewhere)."""
    common: dict[str, Any] = {
        "display_name": body.display_name, "domains": sorted({d.lower() for d in body.domains}),
        "default_role": body.default_role, "required": body.required,
    }  # fmt: skip
    if body.protocol == "saml":
        assert body.metadata_url is not None  # the schema's: SAML needs it
        async with httpx.AsyncClient() as http:
            with _refused_on("metadata_url"):
                metadata = await sso.saml_metadata(http, body.metadata_url, local=local)
        await kc.set_company_saml(
            realm, metadata=metadata, metadata_url=body.metadata_url, **common
        )
        return
    assert body.issuer is not None  # the schema's: OpenID Connect needs them
    assert body.client_id is not None
    same = before is not None and (before.issuer, before.client_id) == (body.issuer, body.client_id)
    if body.client_secret is None and not same:
        raise ProviderRefusedError("client_secret", "no client secret")
    async with httpx.AsyncClient() as http:
        with _refused_on("issuer"):
            meta = await sso.discover(http, body.issuer, local=local)
    await kc.set_company_oidc(
        realm, meta=meta, client_id=body.client_id,
        client_secret=body.client_secret.get_secret_value() if body.client_secret else None,
        **common,
    )  # fmt: skip


async def _audit_put(
    session: AsyncSession, admin: Principal, realm: str, body: SsoProviderIn, *,
    before: SsoProvider | None, after: SsoProvider | None,
) -> None:  # fmt: skip
    assert after is not None
    changed = {**after.model_dump(include=_SHOWN), "secret_set": body.client_secret is not None}
    await audit.record(
        session, admin.actor, "identity.sso.updated", admin.tenant_id, f"realm:{realm}",
        before=before.model_dump(include=_SHOWN) if before else None, after=changed,
    )  # fmt: skip


@router.delete("", status_code=204, summary="Disconnect the company provider")
async def delete_provider(request: Request, admin: WriteUsers) -> Response:
    realm = _tenant_realm(admin)
    kc = _keycloak(request)
    async with request_db(request).session() as session:
        if kc is not None:
            removed = await kc.remove_company_sign_in(realm)
        else:
            removed = await sso.disconnect(session, realm)
        if not removed:
            raise NotFoundError("no company sign-in is connected")
        await audit.record(
            session, admin.actor, "identity.sso.removed", admin.tenant_id, f"realm:{realm}"
        )
    return Response(status_code=204)
