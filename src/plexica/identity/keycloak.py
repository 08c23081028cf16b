"""Keycloak as the identity provider: one realm per tenant, through the Admin REST API.

A tenant's realm is created by one realm import (``keycloak_realm``), which Keycloak applies in
one transaction: a failed creation leaves no half realm. Transport failures and 5xx answers
become ``identity_unavailable`` (503) so that provisioning rolls back (``keycloak_admin``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

from plexica.identity.adapter import RealmClient, RealmUser
from plexica.identity.keycloak_admin import (
    IdentityConflictError,
    IdentityInvalidError,
    IdentityNotFoundError,
    KeycloakAdminClient,
    expect,
)
from plexica.identity.keycloak_realm import (
    API_AUDIENCE,
    TENANT_ATTRIBUTE,
    client_representation,
    realm_representation,
)
from plexica.settings import Settings
from plexica_sdk.errors import ConflictError, PlexicaError
from plexica_sdk.revocation import Revocation

_REALM = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_USER_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_BUILTIN_ROLES = frozenset({"offline_access", "uma_authorization"})
_CONFIGURE_TOTP = "CONFIGURE_TOTP"
# Company sign-in (ADR 0247): the identity provider's alias, its role mapper, Keycloak's mask of
# a secret, and the platform's own keys in the provider's config.
COMPANY_IDP = "company"
_DEFAULT_ROLE_MAPPER = "plexica-default-role"
_MASKED = "**********"
_DOMAINS, _REQUIRED, _UPDATED_AT = "plexicaDomains", "plexicaRequired", "plexicaUpdatedAt"


class PasswordManagedByProviderError(ConflictError):
    """Keycloak cannot check a current password for us (ADR 0231): the change is refused."""

    code = "password_managed_by_provider"


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise IdentityInvalidError(f"invalid {what}", details={what: value[:100]})
    return value


def _managed(role: str) -> bool:
    return role not in _BUILTIN_ROLES and not role.startswith("default-roles-")


class KeycloakAdapter(KeycloakAdminClient):
    """``IdentityAdapter`` over Keycloak's Admin REST API (admin token from the master realm)."""

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
    ) -> None:
        """``public_url``: where users reach Keycloak, the issuer its tokens name, when that
        is not ``url``, where the platform calls it (ADR 0244)."""
        super().__init__(url, admin_user, admin_password, timeout=timeout, transport=transport)
        self.public_url = (public_url or url).rstrip("/")
        self.audience = audience
        self.web_redirect_uris = web_redirect_uris
        self.tenant_web_url = tenant_web_url

    @classmethod
    def from_settings(cls, settings: Settings) -> KeycloakAdapter:
        if settings.keycloak_url is None or settings.keycloak_admin_user is None:
            raise ValueError("PLEXICA_KEYCLOAK_URL and PLEXICA_KEYCLOAK_ADMIN_USER are required")
        password = settings.keycloak_admin_password
        return cls(
            str(settings.keycloak_url),
            settings.keycloak_admin_user,
            password.get_secret_value() if password else "",
            web_redirect_uris=(f"{settings.public_base_url}/auth/callback",),
            tenant_web_url=settings.tenant_web_url,
            public_url=settings.issuer_base_url,
        )

    def issuer_url(self, realm: str) -> str:
        return f"{self.public_url}/realms/{realm}"

    # -- realms -------------------------------------------------------------------------------

    async def create_realm(self, realm: str, tenant_id: UUID | None) -> None:
        _check(realm, _REALM, "realm")
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
        _check(realm, _REALM, "realm")
        response = await self._call("DELETE", f"/admin/realms/{realm}")
        if response.status_code != 404:
            expect(response, 204)

    async def set_realm_enabled(self, realm: str, enabled: bool) -> None:
        _check(realm, _REALM, "realm")
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
        _check(realm, _REALM, "realm")
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
        _check(realm, _REALM, "realm")
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
        _check(realm, _REALM, "realm")
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
        _check(realm, _REALM, "realm")
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
        have = {r["name"] for r in current if _managed(r["name"])}
        add = [r for r in wanted if r["name"] not in have]
        remove = [r for r in current if _managed(r["name"]) and r["name"] not in roles]
        if add:
            await self._map_roles("POST", realm, user_id, add)
        if remove:
            await self._map_roles("DELETE", realm, user_id, remove)

    # -- sign-in policy ------------------------------------------------------------------------

    async def set_sign_in_policy(
        self,
        realm: str,
        *,
        mfa_required: bool,
        password_min_length: int,
        session_max_hours: int,
        session_idle_minutes: int,
    ) -> None:
        """A tenant's sign-in policy as its realm's settings (ADR 0245): the password policy's
        ``length``, the SSO session's maximum and idle lifetimes, and two-step sign-in as the
        OTP required action. Idempotent: applying it again finishes an interrupted one."""
        current = await self._realm(realm)
        kept = [
            term.strip()
            for term in str(current.get("passwordPolicy") or "").split(" and ")
            if term.strip() and not term.strip().startswith("length(")
        ]
        settings = {
            "passwordPolicy": " and ".join([f"length({password_min_length})", *kept]),
            "ssoSessionMaxLifespan": session_max_hours * 3600,
            "ssoSessionIdleTimeout": session_idle_minutes * 60,
        }
        expect(await self._call("PUT", f"/admin/realms/{realm}", json=settings), 204)
        await self._require_otp(realm, mfa_required)

    async def _require_otp(self, realm: str, required: bool) -> None:
        """Keycloak's ``CONFIGURE_TOTP`` as a default action (users created from now on get it,
        those made through the Admin API included) and pending for every user without an OTP
        credential; or no longer default and withdrawn where still pending."""
        path = f"/admin/realms/{realm}/authentication/required-actions/{_CONFIGURE_TOTP}"
        action = expect(await self._call("GET", path), 200).json()
        if required:
            action["enabled"] = True
        action["defaultAction"] = required
        expect(await self._call("PUT", path, json=action), 204)
        users = await self._paged(f"/admin/realms/{realm}/users", {"briefRepresentation": "false"})
        for user in users:
            pending = list(user.get("requiredActions") or [])
            if required == (_CONFIGURE_TOTP in pending):
                continue
            user_path = self._user_path(realm, user["id"])
            if required:
                credentials = expect(await self._call("GET", f"{user_path}/credentials"), 200)
                if any(c.get("type") == "otp" for c in credentials.json()):
                    continue
                pending.append(_CONFIGURE_TOTP)
            else:
                pending.remove(_CONFIGURE_TOTP)
            expect(await self._call("PUT", user_path, json={"requiredActions": pending}), 204)

    # -- company sign-in -----------------------------------------------------------------------

    async def company_sign_in(self, realm: str) -> dict[str, Any] | None:
        """The realm's company identity provider (ADR 0247) as ``SsoProvider`` fields, read
        back from Keycloak (no secret: Keycloak masks it, it is not returned); None without."""
        path = self._idp_path(realm)
        try:
            idp = expect(await self._call("GET", path), 200).json()
        except IdentityNotFoundError:
            return None
        config = idp.get("config") or {}
        mappers = expect(await self._call("GET", f"{path}/mappers"), 200).json()
        role = next(
            (m["config"].get("role") for m in mappers if m.get("name") == _DEFAULT_ROLE_MAPPER),
            None,
        )
        return {
            "display_name": idp.get("displayName") or COMPANY_IDP,
            "issuer": config.get("issuer", ""),
            "client_id": config.get("clientId", ""),
            "domains": [d for d in config.get(_DOMAINS, "").split(",") if d],
            "default_role": role or "member",
            "required": config.get(_REQUIRED) == "true",
            "updated_at": config.get(_UPDATED_AT),
        }

    async def set_company_sign_in(
        self,
        realm: str,
        *,
        display_name: str,
        meta: dict[str, Any],
        client_id: str,
        client_secret: str | None,
        domains: list[str],
        default_role: str,
        required: bool,
    ) -> None:
        """Creates or updates the realm's OpenID Connect identity provider ``company`` from the
        company's checked discovery document ``meta``, and the mapper giving the accounts it
        makes ``default_role``. ``client_secret`` None keeps the one Keycloak holds (refused
        when there is none yet). Idempotent: a PUT again finishes an interrupted one."""
        await self._roles(realm, frozenset({default_role}))  # unknown roles are bad input
        path = self._idp_path(realm)
        try:
            current: dict[str, Any] | None = expect(await self._call("GET", path), 200).json()
        except IdentityNotFoundError:
            current = None
        if client_secret is None and current is None:
            raise IdentityInvalidError(
                "enter the client secret", details={"client_secret": "required"}
            )
        config = {
            "issuer": str(meta["issuer"]),
            "authorizationUrl": str(meta["authorization_endpoint"]),
            "tokenUrl": str(meta["token_endpoint"]),
            "jwksUrl": str(meta["jwks_uri"]),
            "useJwksUrl": "true",
            "validateSignature": "true",
            "clientId": client_id,
            # Keycloak's mask keeps the secret it holds.
            "clientSecret": client_secret if client_secret is not None else _MASKED,
            "clientAuthMethod": "client_secret_post",
            "pkceEnabled": "true",
            "pkceMethod": "S256",
            "defaultScope": "openid email",
            "syncMode": "IMPORT",
            "updateProfileFirstLoginMode": "off",
            _DOMAINS: ",".join(domains),
            _REQUIRED: "true" if required else "false",
            _UPDATED_AT: datetime.now(UTC).isoformat(),
        }
        if meta.get("userinfo_endpoint"):
            config["userInfoUrl"] = str(meta["userinfo_endpoint"])
        if meta.get("end_session_endpoint"):
            config["logoutUrl"] = str(meta["end_session_endpoint"])
        idp = {
            "alias": COMPANY_IDP,
            "providerId": "oidc",
            "displayName": display_name,
            "enabled": True,
            "trustEmail": True,
            "config": config,
        }
        if current is None:
            created = await self._call(
                "POST", f"/admin/realms/{realm}/identity-provider/instances", json=idp
            )
            expect(created, 201)
        else:
            expect(await self._call("PUT", path, json={**current, **idp}), 204)
        await self._default_role_mapper(realm, default_role)

    async def remove_company_sign_in(self, realm: str) -> bool:
        """Removes the realm's company identity provider (and its mappers); whether there was
        one. Accounts it made stay, without their link to the company."""
        response = await self._call("DELETE", self._idp_path(realm))
        if response.status_code == 404:
            return False
        expect(response, 204)
        return True

    async def _default_role_mapper(self, realm: str, role: str) -> None:
        path = f"{self._idp_path(realm)}/mappers"
        mappers = expect(await self._call("GET", path), 200).json()
        mapper = {
            "name": _DEFAULT_ROLE_MAPPER,
            "identityProviderAlias": COMPANY_IDP,
            "identityProviderMapper": "oidc-hardcoded-role-idp-mapper",
            "config": {"role": role, "syncMode": "INHERIT"},
        }
        found = next((m for m in mappers if m.get("name") == _DEFAULT_ROLE_MAPPER), None)
        if found is None:
            expect(await self._call("POST", path, json=mapper), 201)
        else:
            body = {**found, **mapper}
            expect(await self._call("PUT", f"{path}/{found['id']}", json=body), 204)

    def _idp_path(self, realm: str) -> str:
        _check(realm, _REALM, "realm")
        return f"/admin/realms/{realm}/identity-provider/instances/{COMPANY_IDP}"

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
        _check(realm, _REALM, "realm")
        _check(client_id, _CLIENT_ID, "client_id")
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
        _check(realm, _REALM, "realm")
        _check(client_id, _CLIENT_ID, "client_id")
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
        url = self.tenant_web_url(realm.removeprefix("plexica-")) if self.tenant_web_url else None
        if tenant is None or url is None:
            return self.web_redirect_uris
        return (*self.web_redirect_uris, f"{url}/auth/callback")

    def _realm_representation(self, realm: str, tenant_id: UUID | None) -> dict[str, Any]:
        tenant = str(tenant_id) if tenant_id else None
        return realm_representation(
            realm, tenant_id, self.audience, self._web_callbacks(realm, tenant)
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _user_path(self, realm: str, user_id: str) -> str:
        _check(realm, _REALM, "realm")
        _check(user_id, _USER_ID, "user_id")
        return f"/admin/realms/{realm}/users/{user_id}"

    async def _realm(self, realm: str) -> dict[str, Any]:
        _check(realm, _REALM, "realm")
        return dict(expect(await self._call("GET", f"/admin/realms/{realm}"), 200).json())

    async def _realm_roles(self, realm: str) -> list[str]:
        roles = expect(await self._call("GET", f"/admin/realms/{realm}/roles"), 200).json()
        return [r["name"] for r in roles if _managed(r["name"])]

    async def _roles(self, realm: str, names: frozenset[str]) -> list[dict[str, Any]]:
        """The realm's representations of ``names``; unknown names are bad input."""
        if not names:
            return []
        roles = expect(await self._call("GET", f"/admin/realms/{realm}/roles"), 200).json()
        by_name = {r["name"]: r for r in roles if _managed(r["name"])}
        unknown = sorted(names - by_name.keys())
        if unknown:
            raise IdentityInvalidError(
                "unknown role", code="identity_unknown_role", details={"roles": unknown}
            )
        return [{"id": by_name[n]["id"], "name": n} for n in sorted(names)]

    async def _map_roles(
        self, method: str, realm: str, user_id: str, roles: list[dict[str, Any]]
    ) -> None:
        path = f"{self._user_path(realm, user_id)}/role-mappings/realm"
        expect(await self._call(method, path, json=roles), 204)
