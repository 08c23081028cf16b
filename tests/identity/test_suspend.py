"""A suspended tenant's realm refuses sign-ins and token grants (built-in provider); its tokens
already issued get ``tenant_suspended``; reactivation gives it all back."""

from __future__ import annotations

import uuid

import httpx
import pytest

from plexica.identity.bootstrap import OperatorCredentials
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.client import LoginError
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_admin import IdentityUnavailableError
from plexica.identity.service import OPERATOR_REALM
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.tenants.schemas import State
from plexica.tenants.service import TenantService
from tests.identity.conftest import (
    Live,
    bearer,
    login,
    new_tenant,
    register_tenant,
    set_password,
)


async def test_suspend_disables_the_realm_and_reactivate_enables_it(
    live: Live, db: Database, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    op = bearer(await login(http, live, OPERATOR_REALM, operator.email, operator.password))
    slug = f"s{uuid.uuid4().hex[:8]}"
    made = await http.post(
        live.url + "/v1/tenants",
        headers=op,
        json={"slug": slug, "name": "Suspended Inc", "admin_email": f"boss@{slug}.example"},
    )
    assert made.status_code == 201, made.text
    realm, email = f"plexica-{slug}", f"boss@{slug}.example"
    password = await set_password(db, realm, email)
    admin = bearer(await login(http, live, realm, email, password))
    client = (
        await http.post(live.url + "/v1/service-clients", headers=admin, json={"client_id": "svc"})
    ).json()
    token_url = client["token_url"]

    async def service_grant() -> httpx.Response:
        return await http.post(
            token_url, data={"grant_type": "client_credentials"}, auth=("svc", client["secret"])
        )

    assert (await service_grant()).status_code == 200

    suspended = await http.post(live.url + f"/v1/tenants/{slug}/suspend", headers=op)
    assert suspended.json()["state"] == "suspended"
    with pytest.raises(LoginError):
        await login(http, live, realm, email, password)
    assert (await service_grant()).status_code == 404
    tenant = await http.get(live.url + "/v1/tenant", headers=admin)
    assert tenant.status_code == 403
    assert tenant.json()["error"]["code"] == "tenant_suspended"

    reactivated = await http.post(live.url + f"/v1/tenants/{slug}/reactivate", headers=op)
    assert reactivated.json()["state"] == "active"
    again = bearer(await login(http, live, realm, email, password))
    assert (await http.get(live.url + "/v1/tenant", headers=again)).status_code == 200
    assert (await service_grant()).status_code == 200


async def test_provider_down_keeps_the_tenant_active(db: Database) -> None:
    tenant = new_tenant("down")
    await register_tenant(db, tenant)
    async with KeycloakAdapter(f"http://127.0.0.1:{free_port()}", "admin", "x") as down:
        tenants = TenantService(db, [RealmStep(down, db)])
        with pytest.raises(IdentityUnavailableError):
            await tenants.suspend(tenant.id)
    assert (await tenants.get(tenant.id)).state is State.ACTIVE


async def test_a_tenant_without_realm_is_still_suspended_and_reactivated(
    live: Live, db: Database
) -> None:
    tenant = new_tenant("norealm")
    await register_tenant(db, tenant)
    tenants = TenantService(db, [RealmStep(BuiltinIdentity(db, live.url), db)])
    assert (await tenants.suspend(tenant.id)).state is State.SUSPENDED
    assert (await tenants.reactivate(tenant.id)).state is State.ACTIVE
