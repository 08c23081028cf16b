"""``/v1/me``, ``/v1/users`` (tenant admins manage their realm's users) and ``/v1/roles``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from plexica.audit import service as audit
from plexica.events import service as events
from plexica.events.events import CoreEvent
from plexica.identity import policy, revocation, service
from plexica.identity.adapter import IdentityAdapter, RealmUser, WrongPasswordError
from plexica.identity.schemas import (
    Me,
    PasswordChange,
    PasswordChanged,
    PasswordReset,
    PermissionsGrant,
    RolePermissions,
    RolesUpdate,
    ServiceClient,
    ServiceClientCreate,
    ServiceClientSecret,
    User,
    UserCreate,
    UserCreated,
)
from plexica.identity.service_clients import ServiceClients
from plexica.identity.throttle import refuse_while_blocked
from plexica.kit.db import request_db
from plexica.kit.provisioning import REALM_PREFIX
from plexica.kit.security import PrincipalDep, require_permission
from plexica.kit.state import configured, core_state, started
from plexica_sdk.context import SUPER_ADMIN, TENANT_ADMIN, Principal
from plexica_sdk.errors import ForbiddenError, NotFoundError
from plexica_sdk.revocation import Revocation, RevocationList

me_router = APIRouter(prefix="/v1/me", tags=["identity"])
users_router = APIRouter(prefix="/v1/users", tags=["identity"])
roles_router = APIRouter(prefix="/v1/roles", tags=["identity"])
service_clients_router = APIRouter(prefix="/v1/service-clients", tags=["identity"])

ADMIN_ROLES = frozenset({TENANT_ADMIN, SUPER_ADMIN})
ReadUsers = Annotated[Principal, Depends(require_permission("identity:users:read"))]
WriteUsers = Annotated[Principal, Depends(require_permission("identity:users:write"))]
WriteRoles = Annotated[Principal, Depends(require_permission("identity:roles:write"))]
ReadClients = Annotated[Principal, Depends(require_permission("identity:clients:read"))]
WriteClients = Annotated[Principal, Depends(require_permission("identity:clients:write"))]


@me_router.get("", summary="The authenticated caller")
async def me(principal: PrincipalDep) -> Me:
    return Me(
        subject=principal.subject,
        issuer=principal.issuer,
        email=principal.email,
        tenant_id=principal.tenant_id,
        tenant_slug=principal.tenant_slug,
        roles=sorted(principal.roles),
        permissions=sorted(principal.permissions),
        is_operator=principal.is_operator,
        is_service=principal.is_service,
        client_id=principal.client_id,
    )


@me_router.post(
    "/password",
    summary="Change your own password (the current one is required); your other sessions end",
)
async def change_password(
    request: Request, principal: PrincipalDep, body: PasswordChange
) -> PasswordChanged:
    if principal.acting_operator is not None:
        raise ForbiddenError(
            "a support session cannot change the user's password", code="support_session_forbidden"
        )
    realm = _realm_of(principal)
    adapter = _adapter(request)
    # Counted per account only, under a realm name of its own: the core sees the shell's
    # address, which every user shares, and sign-in's counters are not this one's.
    account = (f"password:{realm}", principal.subject, f"password:{realm}:{principal.subject}")
    actor, target = principal.actor, f"user:{principal.subject}"
    wrong = Proof(WrongPasswordError, "wrong passwords", "identity.user.password_change_failed")
    async with proving(request, principal, account, wrong):
        if _builtin(request):
            async with request_db(request).session() as session:
                weak = await policy.refused(
                    session, realm, body.new_password, email=principal.email or "",
                    field="new_password", actor=actor, tenant_id=principal.tenant_id,
                    target=target,
                )  # fmt: skip
            if weak is not None:
                raise weak
        ended = await adapter.change_password(
            realm, principal.subject, body.current_password, body.new_password,
            keep_session=principal.session_id,
        )  # fmt: skip
    async with request_db(request).session() as session:
        await audit.record(
            session, actor, "identity.user.password_changed", principal.tenant_id, target,
            after={"sessions_ended": len(ended)},
        )  # fmt: skip
    _noted(request, *ended)
    return PasswordChanged(sessions_ended=len(ended))


@dataclass(frozen=True)
class Proof:
    """What a wrong proof of the caller's own (a password, a code) raises, how the refusal
    while blocked names it, and the audit action of one."""

    wrong: type[Exception]
    refused_as: str
    failed_action: str


@asynccontextmanager
async def proving(
    request: Request, principal: Principal, account: tuple[str, str, str], proof: Proof
) -> AsyncIterator[None]:
    """The caller proves something of their own, throttled per ``account``: refused while
    blocked; a wrong proof is counted and audited; a right one clears the account's count."""
    throttle = started(core_state(request).login_throttle, "login_throttle")
    await refuse_while_blocked(throttle, *account, proof.refused_as)
    try:
        yield
    except proof.wrong:
        await throttle.failed(*account)
        async with request_db(request).session() as session:
            target = f"user:{principal.subject}"
            await audit.record(
                session, principal.actor, proof.failed_action, principal.tenant_id, target
            )
        raise
    await throttle.succeeded(*account[:2])


def _realm_of(principal: Principal) -> str:
    """The caller's own realm: a tenant admin manages only their tenant's users."""
    if principal.is_service:
        raise ForbiddenError("service tokens cannot manage users")
    if principal.tenant_slug is not None:
        return REALM_PREFIX + principal.tenant_slug
    return service.OPERATOR_REALM


def _builtin(request: Request) -> bool:
    """The built-in provider keeps the realm's policy; Keycloak enforces its own."""
    return core_state(request).settings.keycloak_url is None


def _adapter(request: Request) -> IdentityAdapter:
    return configured(
        core_state(request).identity, "no identity provider is configured on this service"
    )


def _revocations(request: Request) -> RevocationList | None:
    return core_state(request).revocations


def _noted(request: Request, *cuts: Revocation | None) -> None:
    """After the commit: this process refuses at once; the others are woken by the store."""
    revocations = _revocations(request)
    if revocations is not None:
        revocations.note(*(c for c in cuts if c is not None))


def _user(user: RealmUser) -> User:
    return User(id=UUID(user.id), email=user.email, enabled=user.enabled, roles=sorted(user.roles))


async def _find(adapter: IdentityAdapter, realm: str, user_id: UUID) -> User:
    for user in await adapter.list_users(realm):
        if user.id == str(user_id):
            return _user(user)
    raise NotFoundError("no such user")


@users_router.get("", summary="Users of the caller's tenant")
async def list_users(request: Request, principal: ReadUsers) -> list[User]:
    return [_user(u) for u in await _adapter(request).list_users(_realm_of(principal))]


@users_router.post("", status_code=201, summary="Create (invite) a user")
async def create_user(request: Request, principal: WriteUsers, body: UserCreate) -> UserCreated:
    realm = _realm_of(principal)
    roles = service.check_roles(realm, body.roles)
    initial, weak = None, None
    if _builtin(request):
        async with request_db(request).session() as session:
            if body.password is None:
                initial = await policy.generated_password(session, realm, body.email)
            else:
                weak = await policy.refused(
                    session, realm, body.password, email=body.email, field="password",
                    actor=principal.actor, tenant_id=principal.tenant_id, target=f"realm:{realm}",
                )  # fmt: skip
        if weak is not None:
            raise weak
    elif body.password is None:
        initial = service.generate_password()
    made = await _adapter(request).create_user(realm, body.email, body.password or initial, roles)
    user = _user(made)
    async with request_db(request).session() as session:
        await audit.record(
            session, principal.actor, "identity.user.created", principal.tenant_id,
            f"user:{user.id}", after=user.model_dump(mode="json"),
        )  # fmt: skip
        await events.publish(
            session, CoreEvent.USER_INVITED, {"user_id": user.id, "roles": sorted(roles)},
            tenant_id=principal.tenant_id, subject=f"users/{user.id}",
        )  # fmt: skip
    return UserCreated(user=user, initial_password=initial)


async def _set_enabled(request: Request, principal: Principal, user_id: UUID, on: bool) -> User:
    realm = _realm_of(principal)
    adapter = _adapter(request)
    before = await _find(adapter, realm, user_id)
    if not on and str(user_id) == principal.subject:
        raise ForbiddenError("you cannot disable yourself")
    await adapter.set_user_enabled(realm, str(user_id), on)
    after = before.model_copy(update={"enabled": on})
    cut = None
    async with request_db(request).session() as session:
        if not on:  # after the provider: no token got under the old state is newer
            cut = await revocation.cut_subject(session, realm, str(user_id))
        await audit.record(
            session, principal.actor,
            "identity.user.enabled" if on else "identity.user.disabled", principal.tenant_id,
            f"user:{user_id}", before.model_dump(mode="json"), after.model_dump(mode="json"),
        )  # fmt: skip
    _noted(request, cut)
    return after


@users_router.post("/{user_id}/disable", summary="Disable a user (their sessions end)")
async def disable_user(request: Request, principal: WriteUsers, user_id: UUID) -> User:
    return await _set_enabled(request, principal, user_id, False)


@users_router.post("/{user_id}/enable", summary="Enable a user")
async def enable_user(request: Request, principal: WriteUsers, user_id: UUID) -> User:
    return await _set_enabled(request, principal, user_id, True)


@users_router.put("/{user_id}/roles", summary="Replace a user's roles")
async def set_roles(
    request: Request, principal: WriteUsers, user_id: UUID, body: RolesUpdate
) -> User:
    realm = _realm_of(principal)
    roles = service.check_roles(realm, body.roles)
    if str(user_id) == principal.subject and not roles & principal.roles & ADMIN_ROLES:
        raise ForbiddenError("you cannot remove your own administrator role")
    adapter = _adapter(request)
    before = await _find(adapter, realm, user_id)
    await adapter.set_user_roles(realm, str(user_id), roles)
    after = before.model_copy(update={"roles": sorted(roles)})
    cut = None
    async with request_db(request).session() as session:
        if set(before.roles) - roles:  # a role taken away: tokens that carry it are refused
            cut = await revocation.cut_subject(session, realm, str(user_id))
        await audit.record(
            session, principal.actor, "identity.user.roles_changed",
            principal.tenant_id, f"user:{user_id}",
            before.model_dump(mode="json"), after.model_dump(mode="json"),
        )  # fmt: skip
        await events.publish(
            session, CoreEvent.USER_ROLE_CHANGED,
            {"user_id": str(user_id), "before": before.roles, "after": after.roles},
            tenant_id=principal.tenant_id, subject=f"users/{user_id}",
        )  # fmt: skip
    _noted(request, cut)
    if cut is not None:
        await revocation.wait_for(cut.before)  # the user's next token carries the new roles
    return after


@users_router.post(
    "/{user_id}/end-sessions",
    summary="End a user's sessions: their tokens are refused everywhere; they sign in again",
)
async def end_sessions(request: Request, principal: WriteUsers, user_id: UUID) -> User:
    realm = _realm_of(principal)
    adapter = _adapter(request)
    user = await _find(adapter, realm, user_id)
    await adapter.end_sessions(realm, str(user_id))
    async with request_db(request).session() as session:
        cut = await revocation.cut_subject(session, realm, str(user_id))
        await audit.record(
            session, principal.actor, "identity.user.sessions_ended",
            principal.tenant_id, f"user:{user_id}", after=user.model_dump(mode="json"),
        )  # fmt: skip
    _noted(request, cut)
    await revocation.wait_for(cut.before)  # signing in again right after works
    return user


@users_router.post(
    "/{user_id}/reset-password",
    summary="Give a user of the caller's realm a new generated password (shown once)",
)
async def reset_password(request: Request, principal: WriteUsers, user_id: UUID) -> PasswordReset:
    realm = _realm_of(principal)
    adapter = _adapter(request)
    user = await _find(adapter, realm, user_id)
    password = service.generate_password()
    if _builtin(request):
        async with request_db(request).session() as session:
            password = await policy.generated_password(session, realm, user.email)
    await adapter.set_password(realm, user.email, password)
    async with request_db(request).session() as session:
        await audit.record(
            session, principal.actor, "identity.user.password_reset",
            principal.tenant_id, f"user:{user_id}",
        )  # fmt: skip
    return PasswordReset(user=user, password=password)


def _tenant_of(principal: Principal) -> UUID:
    if principal.tenant_id is None:
        raise ForbiddenError("role permissions are set per tenant")
    return principal.tenant_id


def _tenant_role(principal: Principal, role: str) -> UUID:
    """The caller's tenant, once ``role`` is one of its realm's roles."""
    tenant_id = _tenant_of(principal)
    service.check_roles(REALM_PREFIX + (principal.tenant_slug or ""), [role])
    return tenant_id


async def _change_permissions(
    request: Request, principal: Principal, role: str, permissions: list[str], *, grant: bool
) -> RolePermissions:
    """Grant (or take) the role's ``permissions`` in the caller's tenant; the verifiers' cached
    permissions are dropped. A grant is audited even when it changed nothing, a revocation only
    when it did."""
    tenant_id = _tenant_role(principal, role)
    async with request_db(request).session() as session:
        before = await service.role_permissions(session, tenant_id, role)
        if grant:
            await service.grant_permissions(session, tenant_id, role, permissions)
        else:
            await service.revoke_permissions(session, tenant_id, role, permissions)
        after = await service.role_permissions(session, tenant_id, role)
        if grant or before != after:
            action = "permissions_granted" if grant else "permissions_revoked"
            audited = f"identity.role.{action}"
            await audit.record(
                session, principal.actor, audited, tenant_id, f"role:{role}", before, after
            )
    _invalidate_permissions(request)
    return RolePermissions(role=role, permissions=after)


@roles_router.get("", summary="The roles a user of this tenant can be given, with permissions")
async def list_roles(request: Request, principal: ReadUsers) -> list[RolePermissions]:
    tenant_id = _tenant_of(principal)
    realm = _realm_of(principal)
    async with request_db(request).session() as session:
        return [
            RolePermissions(
                role=role, permissions=await service.role_permissions(session, tenant_id, role)
            )
            for role in sorted(service.realm_roles(realm))
        ]


@roles_router.get("/{role}/permissions", summary="Permissions a role has in this tenant")
async def get_role_permissions(
    request: Request, principal: ReadUsers, role: str
) -> RolePermissions:
    tenant_id = _tenant_role(principal, role)
    async with request_db(request).session() as session:
        permissions = await service.role_permissions(session, tenant_id, role)
    return RolePermissions(role=role, permissions=permissions)


@roles_router.post("/{role}/permissions", summary="Grant permissions to a role in this tenant")
async def grant_role_permissions(
    request: Request, principal: WriteRoles, role: str, body: PermissionsGrant
) -> RolePermissions:
    return await _change_permissions(request, principal, role, body.permissions, grant=True)


@roles_router.delete(
    "/{role}/permissions/{permission}", summary="Take a permission from a role in this tenant"
)
async def revoke_role_permission(
    request: Request, principal: WriteRoles, role: str, permission: str
) -> RolePermissions:
    return await _change_permissions(request, principal, role, [permission], grant=False)


def _invalidate_permissions(request: Request) -> None:
    verifier = core_state(request).verifier
    invalidate = getattr(getattr(verifier, "permissions", None), "invalidate", None)
    if callable(invalidate):
        invalidate()


@asynccontextmanager
async def _clients(request: Request, principal: Principal) -> AsyncIterator[ServiceClients]:
    """The caller's realm's service clients, in one transaction committed on success."""
    realm = _realm_of(principal)
    adapter = _adapter(request)
    async with request_db(request).session() as session:
        yield ServiceClients(
            session, adapter, _revocations(request), realm,
            principal.tenant_id, principal.actor,
        )  # fmt: skip


@service_clients_router.get("", summary="Service clients of the caller's realm")
async def list_service_clients(request: Request, principal: ReadClients) -> list[ServiceClient]:
    async with _clients(request, principal) as clients:
        return await clients.list()


@service_clients_router.post(
    "", status_code=201, summary="Create a service client (its secret is shown once)"
)
async def create_service_client(
    request: Request, principal: WriteClients, body: ServiceClientCreate
) -> ServiceClientSecret:
    async with _clients(request, principal) as clients:
        return await clients.create(body)


@service_clients_router.get("/{client_id}", summary="One service client")
async def get_service_client(
    request: Request, principal: ReadClients, client_id: str
) -> ServiceClient:
    async with _clients(request, principal) as clients:
        return await clients.get(client_id)


@service_clients_router.post(
    "/{client_id}/disable", summary="Disable: no new tokens, tokens already issued refused"
)
async def disable_service_client(
    request: Request, principal: WriteClients, client_id: str
) -> ServiceClient:
    async with _clients(request, principal) as clients:
        return await clients.set_enabled(client_id, False)


@service_clients_router.post("/{client_id}/enable", summary="Enable (earlier tokens stay refused)")
async def enable_service_client(
    request: Request, principal: WriteClients, client_id: str
) -> ServiceClient:
    async with _clients(request, principal) as clients:
        return await clients.set_enabled(client_id, True)


@service_clients_router.post(
    "/{client_id}/rotate-secret", summary="A new secret; the old one and its tokens stop working"
)
async def rotate_service_client_secret(
    request: Request, principal: WriteClients, client_id: str
) -> ServiceClientSecret:
    async with _clients(request, principal) as clients:
        return await clients.rotate_secret(client_id)


@service_clients_router.delete(
    "/{client_id}", summary="Revoke: delete the client and refuse its tokens"
)
async def revoke_service_client(
    request: Request, principal: WriteClients, client_id: str
) -> ServiceClient:
    async with _clients(request, principal) as clients:
        return await clients.revoke(client_id)
