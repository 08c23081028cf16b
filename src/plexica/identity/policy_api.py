"""``/v1/security-policy``: a tenant's sign-in policy (two-step sign-in, ADR 0232; passwords and
session lifetimes, ADR 0243), and ``/v1/me/password-policy``, what any of its users may choose.
With Keycloak the policy is also applied to the tenant's realm (ADR 0245)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from plexica.audit import service as audit
from plexica.identity import policy
from plexica.identity.api import ReadUsers, WriteUsers, _realm_of
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.schemas import PasswordPolicy, SecurityPolicy
from plexica.kit.db import request_db
from plexica.kit.security import PrincipalDep
from plexica.kit.state import core_state

policy_router = APIRouter(prefix="/v1/security-policy", tags=["identity"])
me_router = APIRouter(prefix="/v1/me", tags=["identity"])


@policy_router.get("", summary="The tenant's sign-in policy")
async def get_policy(request: Request, admin: ReadUsers) -> SecurityPolicy:
    async with request_db(request).session() as session:
        return policy.as_schema(await policy.of(session, _realm_of(admin)))


@policy_router.put(
    "",
    summary="Set the tenant's sign-in policy (two-step at the next sign-in, passwords when "
    "next chosen, lifetimes for new sessions)",
)
async def put_policy(request: Request, admin: WriteUsers, body: SecurityPolicy) -> SecurityPolicy:
    realm = _realm_of(admin)
    identity = core_state(request).identity
    async with request_db(request).session() as session:
        before = policy.as_schema(await policy.put(session, realm, body))
        if isinstance(identity, KeycloakAdapter):
            # Applied every time, changed or not: a PUT again finishes an interrupted one. A
            # failure here rolls the stored policy back.
            await identity.set_sign_in_policy(realm, **body.model_dump())
        if before != body:
            changed = {k for k, v in body.model_dump().items() if getattr(before, k) != v}
            await audit.record(
                session, admin.actor, "identity.policy.updated", admin.tenant_id,
                f"realm:{realm}", before=before.model_dump(include=changed),
                after=body.model_dump(include=changed),
            )  # fmt: skip
    return body


@me_router.get("/password-policy", summary="What a password of yours must be")
async def password_policy(request: Request, principal: PrincipalDep) -> PasswordPolicy:
    async with request_db(request).session() as session:
        found = await policy.of(session, _realm_of(principal))
    return PasswordPolicy(min_length=found.password_min_length, max_length=policy.MAX_PASSWORD)
