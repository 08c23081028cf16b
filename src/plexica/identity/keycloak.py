"""Keycloak as the identity provider: one realm per tenant, through the Admin REST API.

A tenant's realm is created by one realm import (``keycloak_realm``), which Keycloak applies in
one transaction: a failed creation leaves no half realm. Transport failures and 5xx answers
become ``identity_unavailable`` (503) so that provisioning rolls back (``keycloak_admin``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx

from plexica.identity.adapter import RealmClient, RealmUser
from plexica.identity.keycloak_admin import (
    REALM_NAME,
    IdentityConflictError,
    IdentityNotFoundError,
    check,
    expect,
    managed,
)
from plexica.identity.keycloak_realm import (
    API_AUDIENCE,
    TENANT_ATTRIBUTE,
    client_representation,
    realm_representation,
)
from plexica.identity.keycloak_signin import KeycloakSignIn
from plexica.kit.provisioning import REALM_PREFIX
from plexica.settings import Settings
from plexica_sdk.errors import ConflictError, PlexicaError
from plexica_sdk.revocation import Revocation

_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class PasswordManagedByProviderError(ConflictError):
    """Keycloak cannot check a current password for us (ADR 0231): the change is refused."""

    code = "password_managed_by_provider"


class KeycloakAdapter(KeycloakSignIn):
    """``IdentityAdapter`` over Keycloak's Admin REST API (a token of the master realm: the
    platform client's service account, or its admin)."""

    def __init__(
        self,
        url: str,
        admin_user: str,
        admin_password: str,
        *,
        audience: str = API_AUDIENCE,
        web_redirect_uris: tuple[str, ...] = ("http://127.0.0.1:3000/auth/callback",),
        tenant_web_url: Callable[[str], str | None] | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        public_url: str | None = None,
        service_account: bool = False,
    ) -> None:
        """``public_url``: where users reach Keycloak, the issuer its tokens name, when that
        is not ``url``, where the platform calls it (ADR 0244)."""
        super().__init__(
            url, admin_user, admin_password, service_account=service_account, timeout=timeout,
            transport=transport,
        )  # fmt: skip
        self.public_url = (public_url or url).rstrip("/")
        self.audience = audience
        self.web_redirect_uris = web_redirect_uris
        self.tenant_web_url = tenant_web_url

    @classmethod
    def from_settings(cls, settings: Settings) -> KeycloakAdapter:
        """The platform's client when it has one (ADR 0251), else the master realm's admin."""
        client, secret = settings.keycloak_client_id, settings.keycloak_client_secret
        user, password = settings.keycloak_admin_user, settings.keycloak_admin_password
        login, key = (client, secret) if client is not None else (user, password)
        if settings.keycloak_url is None or login is None:
            raise ValueError("PLEXICA_KEYCLOAK_URL and PLEXICA_KEYCLOAK_CLIENT_ID are required")
        if client is not None and secret is None:
            # The web shell has the ID (the shared configuration) but calls no Admin API.
            raise ValueError("PLEXICA_KEYCLOAK_CLIENT_SECRET is required")
        return cls(
            str(settings.keycloak_url),
            login,
            key.get_secret_value() if key else "",
            service_account=client is not None,
            web_redirect_uris=(f"{settings.public_base_url}/auth/callback",),
            tenant_web_url=settings.tenant_web_url,
            public_url=settings.issuer_base_url,
        )

    def issuer_url(self, realm: str) -> str:
        return f"{self.public_url}/realms/{realm}"

    # -- realms -------------------------------------------------------------------------------

    async def create_realm(self, realm: str, tenant_id: UUID | None) -> None:
        check(realm, REALM_NAME, "realm")
        response = await self._call(
            "POST", "/admin/realms", json=self._realm_representation(realm, tenant_id)
        )
        if response.status_code == 409:
            current = await self._realm(realm)
            owner = current.get("attributes", {}).get(TENANT_ATTRIBUTE)
            if owner != (str(tenant_id) if tenant_id else None):
                raise IdentityConflictError("the realm exists for another tenant")
            return
        expect(response, 201)

    async def delete_realm(self, realm: str) -> None:
        check(realm, REALM_NAME, "realm")
        response = await self._call("DELETE", f"/admin/realms/{realm}")
        if response.status_code != 404:
            expect(response, 204)

    async def set_realm_enabled(self, realm: str, enabled: bool) -> None:
        check(realm, REALM_NAME, "realm")
        expect(await self._call("PUT", f"/admin/realms/{realm}", json={"enabled": enabled}), 204)

    async def rotate_keys(self, realm: str) -> None:
        """Add an RS256 key above every current one: new tokens are signed with it, the old keys
        stay in the JWKS so that tokens already issued verify until they expire."""
        realm_id = (await self._realm(realm))["id"]
        keys = expect(await self._call("GET", f"/admin/realms/{realm}/keys"), 200).json()
        priority = max(
            (int(k.get("providerPriority", 0)) for k in keys.get("keys", [])), default=100
        )
        component = {
            "name": f"rsa-rotated-{int(time.time() * 1000)}",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {
                "priority": [str(priority + 1)],
                "keySize": ["2048"],
                "algorithm": ["RS256"],
                "active": ["true"],
                "enabled": ["true"],
            },
        }
        expect(await self._call("POST", f"/admin/realms/{realm}/components", json=component), 201)

    # -- users --------------------------------------------------------------------------------

    async def create_user(
        self,
        realm: str,
        email: str,
        password: str | None,
        roles: frozenset[str],
        *,
        enabled: bool = True,
    ) -> RealmUser:
        check(realm, REALM_NAME, "realm")
        known = await self._roles(realm, roles)
        user: dict[str, Any] = {
            "username": email.lower(),
            "email": email.lower(),
            "enabled": enabled,
            "emailVerified": True,
        }
        if password is not None:
            user["credentials"] = [{"type": "password", "value": password, "temporary": False}]
        response = await self._call("POST", f"/admin/realms/{realm}/users", json=user)
        if response.status_code == 409:
            raise IdentityConflictError("this e-mail has a user", code="identity_user_exists")
        user_id = expect(response, 201).headers["location"].rsplit("/", 1)[-1]
        if known:
            try:
                await self._map_roles("POST", realm, user_id, known)
            except PlexicaError:
                await self._call("DELETE", f"/admin/realms/{realm}/users/{user_id}")
                raise
        return RealmUser(id=user_id, email=email.lower(), enabled=enabled, roles=roles)

    async def delete_user(self, realm: str, user_id: str) -> None:
        response = await self._call("DELETE", self._user_path(realm, user_id))
        if response.status_code != 404:
            expect(response, 204)

    async def list_users(self, realm: str) -> list[RealmUser]:
        check(realm, REALM_NAME, "realm")
        users = await self._paged(f"/admin/realms/{realm}/users", {"briefRepresentation": "true"})
        held: dict[str, set[str]] = {}
        for role in await self._realm_roles(realm):
            for member in await self._paged(f"/admin/realms/{realm}/roles/{role}/users", {}):
                held.setdefault(member["id"], set()).add(role)
        return sorted(
            (
                RealmUser(
                    id=u["id"],
                    email=u.get("email") or u["username"],
                    enabled=bool(u.get("enabled")),
                    roles=frozenset(held.get(u["id"], ())),
                )
                for u in users
            ),
            key=lambda u: u.email,
        )

    async def set_password(self, realm: str, email: str, password: str) -> RealmUser:
        check(realm, REALM_NAME, "realm")
        found = expect(
            await self._call(
                "GET", f"/admin/realms/{realm}/users",
                params={"email": email.strip().lower(), "exact": "true"},
            ),
            200,
        ).json()  # fmt: skip
        if not found:
            raise IdentityNotFoundError("no such user")
        user = found[0]
        path = self._user_path(realm, user["id"])
        credential = {"type": "password", "value": password, "temporary": False}
        expect(await self._call("PUT", f"{path}/reset-password", json=credential), 204)
        expect(await self._call("POST", f"{path}/logout"), 204)
        return RealmUser(user["id"], user.get("email") or user["username"], bool(user["enabled"]))

    async def change_password(
        self, realm: str, user_id: str, current: str, new: str, *, keep_session: str | None
    ) -> list[Revocation]:
        """Refused, never done without the check (ADR 0231): the Admin REST API sets passwords
        but verifies none, and checking one takes the password grant, which no client of ours
        allows. Keycloak's own account console asks for the current password itself."""
        check(realm, REALM_NAME, "realm")
        raise PasswordManagedByProviderError(
            "Your password is managed by the identity provider (Keycloak): change it in its "
            "account console, which asks for your current password.",
            details={"account_url": f"{self.issuer_url(realm)}/account"},
        )

    async def set_user_enabled(self, realm: str, user_id: str, enabled: bool) -> None:
        path = self._user_path(realm, user_id)
        expect(await self._call("PUT", path, json={"enabled": enabled}), 204)
        if not enabled:
            # A disabled user's sessions end now, not when their refresh tokens expire.
            expect(await self._call("POST", f"{path}/logout"), 204)

    async def end_sessions(self, realm: str, user_id: str) -> None:
        expect(await self._call("POST", f"{self._user_path(realm, user_id)}/logout"), 204)

    async def set_user_roles(self, realm: str, user_id: str, roles: frozenset[str]) -> None:
        path = self._user_path(realm, user_id)
        wanted = await self._roles(realm, roles)
        current = expect(await self._call("GET", f"{path}/role-mappings/realm"), 200).json()
        have = {r["name"] for r in current if managed(r["name"])}
        add = [r for r in wanted if r["name"] not in have]
        remove = [r for r in current if managed(r["name"]) and r["name"] not in roles]
        if add:
            await self._map_roles("POST", realm, user_id, add)
        if remove:
            await self._map_roles("DELETE", realm, user_id, remove)

    # -- clients ------------------------------------------------------------------------------

    async def create_client(
        self,
        realm: str,
        client_id: str,
        *,
        public: bool,
        redirect_uris: tuple[str, ...] = (),
        roles: frozenset[str] = frozenset(),
    ) -> RealmClient:
        check(realm, REALM_NAME, "realm")
        check(client_id, _CLIENT_ID, "client_id")
        tenant = (await self._realm(realm)).get("attributes", {}).get(TENANT_ATTRIBUTE)
        known = await self._roles(realm, roles)
        rep = client_representation(client_id, public, redirect_uris, tenant, self.audience)
        response = await self._call("POST", f"/admin/realms/{realm}/clients", json=rep)
        if response.status_code == 409:
            existing = await self._client(realm, client_id)
            if bool(existing.get("publicClient")) != public:
                raise IdentityConflictError("a client with this id exists with another type")
            internal_id = existing["id"]
            redirect_uris = tuple(existing.get("redirectUris", ()))
        else:
            internal_id = expect(response, 201).headers["location"].rsplit("/", 1)[-1]
        secret = None
        if not public:
            path = f"/admin/realms/{realm}/clients/{internal_id}"
            if known:
                account = await self._call("GET", f"{path}/service-account-user")
                account_id = expect(account, 200).json()["id"]
                await self._map_roles("POST", realm, account_id, known)
            secret = expect(await self._call("GET", f"{path}/client-secret"), 200).json()["value"]
        return RealmClient(client_id, public, redirect_uris, secret)

    async def set_client_enabled(self, realm: str, client_id: str, enabled: bool) -> None:
        path = f"/admin/realms/{realm}/clients/{(await self._client(realm, client_id))['id']}"
        expect(await self._call("PUT", path, json={"enabled": enabled}), 204)

    async def rotate_client_secret(self, realm: str, client_id: str) -> str:
        internal_id = (await self._client(realm, client_id))["id"]
        path = f"/admin/realms/{realm}/clients/{internal_id}/client-secret"
        return str(expect(await self._call("POST", path), 200).json()["value"])

    async def delete_client(self, realm: str, client_id: str) -> None:
        try:
            internal_id = (await self._client(realm, client_id))["id"]
        except IdentityNotFoundError:
            return
        response = await self._call("DELETE", f"/admin/realms/{realm}/clients/{internal_id}")
        if response.status_code != 404:
            expect(response, 204)

    async def _client(self, realm: str, client_id: str) -> dict[str, Any]:
        check(realm, REALM_NAME, "realm")
        check(client_id, _CLIENT_ID, "client_id")
        found = expect(
            await self._call(
                "GET", f"/admin/realms/{realm}/clients", params={"clientId": client_id}
            ),
            200,
        ).json()
        if not found:
            raise IdentityNotFoundError("no such client in the identity provider")
        return dict(found[0])

    # -- representations ----------------------------------------------------------------------

    def _web_callbacks(self, realm: str, tenant: str | None) -> tuple[str, ...]:
        """The shell's callback at the public URL and, for a tenant, at its own host (ADR 0092)."""
        url = self.tenant_web_url(realm.removeprefix(REALM_PREFIX)) if self.tenant_web_url else None
        if tenant is None or url is None:
            return self.web_redirect_uris
        return (*self.web_redirect_uris, f"{url}/auth/callback")

    def _realm_representation(self, realm: str, tenant_id: UUID | None) -> dict[str, Any]:
        tenant = str(tenant_id) if tenant_id else None
        return realm_representation(
            realm, tenant_id, self.audience, self._web_callbacks(realm, tenant)
        )

    # -- plumbing -----------------------------------------------------------------------------

    async def _realm_roles(self, realm: str) -> list[str]:
        roles = expect(await self._call("GET", f"/admin/realms/{realm}/roles"), 200).json()
        return [r["name"] for r in roles if managed(r["name"])]

    async def _map_roles(
        self, method: str, realm: str, user_id: str, roles: list[dict[str, Any]]
    ) -> None:
        path = f"{self._user_path(realm, user_id)}/role-mappings/realm"
        expect(await self._call(method, path, json=roles), 204)
