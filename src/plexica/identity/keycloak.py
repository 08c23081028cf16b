"""Keycloak as the identity provider: one realm per tenant, through the Admin REST API.

A tenant's realm is created by one realm import (roles, web client, token mappers, user profile),
which Keycloak applies in one transaction: a failed creation leaves no half realm. Transport
failures and 5xx answers become ``identity_unavailable`` (503) so that provisioning rolls back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, Self
from uuid import UUID

import httpx

from plexica.identity.adapter import RealmClient, RealmUser
from plexica.settings import Settings
from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError, UnavailableError
from plexica_sdk.revocation import Revocation

WEB_CLIENT = "plexica-web"
# `plexica token` signs in through this client, as against the built-in provider.
CLI_CLIENT = "plexica-cli"
CLI_REDIRECT = "http://127.0.0.1/plexica-cli/callback"
API_AUDIENCE = "plexica-api"
TENANT_ROLES = ("tenant_admin", "member")
OPERATOR_ROLES = ("super_admin",)
TENANT_ATTRIBUTE = "plexicaTenantId"
_TOKEN_MARGIN_S = 15.0
_PAGE = 100

_REALM = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_USER_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_BUILTIN_ROLES = frozenset({"offline_access", "uma_authorization"})

# Keycloak's default user profile with first and last name optional: Plexica knows users by
# e-mail only, and a required name would block every login with "Account is not fully set up".
_USER_PROFILE = """{"attributes":[
{"name":"username","displayName":"${username}","validations":{"length":{"min":3,"max":255},
 "username-prohibited-characters":{},"up-username-not-idn-homograph":{}},
 "permissions":{"view":["admin","user"],"edit":["admin","user"]},"multivalued":false},
{"name":"email","displayName":"${email}","validations":{"email":{},"length":{"max":255}},
 "required":{"roles":["user"]},"permissions":{"view":["admin","user"],"edit":["admin","user"]},
 "multivalued":false},
{"name":"firstName","displayName":"${firstName}","validations":{"length":{"max":255},
 "person-name-prohibited-characters":{}},"permissions":{"view":["admin","user"],
 "edit":["admin","user"]},"multivalued":false},
{"name":"lastName","displayName":"${lastName}","validations":{"length":{"max":255},
 "person-name-prohibited-characters":{}},"permissions":{"view":["admin","user"],
 "edit":["admin","user"]},"multivalued":false}],
"groups":[{"name":"user-metadata","displayHeader":"User metadata",
 "displayDescription":"Attributes, which refer to user metadata"}]}"""


class IdentityUnavailableError(UnavailableError):
    code = "identity_unavailable"


class IdentityInvalidError(PlexicaError):
    status, code = 422, "identity_invalid"


class IdentityNotFoundError(NotFoundError):
    code = "identity_not_found"


class IdentityConflictError(ConflictError):
    code = "identity_conflict"


class PasswordManagedByProviderError(ConflictError):
    """Keycloak cannot check a current password for us (ADR 0231): the change is refused."""

    code = "password_managed_by_provider"


class IdentityProviderError(PlexicaError):
    """Keycloak answered in a way the adapter does not expect (a bug or a version mismatch)."""

    status, code = 502, "identity_error"


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise IdentityInvalidError(f"invalid {what}", details={what: value[:100]})
    return value


def _managed(role: str) -> bool:
    return role not in _BUILTIN_ROLES and not role.startswith("default-roles-")


class KeycloakAdapter:
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
    ) -> None:
        self.url = url.rstrip("/")
        self.audience = audience
        self.web_redirect_uris = web_redirect_uris
        self.tenant_web_url = tenant_web_url
        self._admin = (admin_user, admin_password)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

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
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def issuer_url(self, realm: str) -> str:
        return f"{self.url}/realms/{realm}"

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
        _expect(response, 201)

    async def delete_realm(self, realm: str) -> None:
        _check(realm, _REALM, "realm")
        response = await self._call("DELETE", f"/admin/realms/{realm}")
        if response.status_code != 404:
            _expect(response, 204)

    async def set_realm_enabled(self, realm: str, enabled: bool) -> None:
        _check(realm, _REALM, "realm")
        _expect(await self._call("PUT", f"/admin/realms/{realm}", json={"enabled": enabled}), 204)

    async def rotate_keys(self, realm: str) -> None:
        """Add an RS256 key above every current one: new tokens are signed with it, the old keys
        stay in the JWKS so that tokens already issued verify until they expire."""
        realm_id = (await self._realm(realm))["id"]
        keys = _expect(await self._call("GET", f"/admin/realms/{realm}/keys"), 200).json()
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
        _expect(await self._call("POST", f"/admin/realms/{realm}/components", json=component), 201)

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
        user_id = _expect(response, 201).headers["location"].rsplit("/", 1)[-1]
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
            _expect(response, 204)

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
        found = _expect(
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
        _expect(await self._call("PUT", f"{path}/reset-password", json=credential), 204)
        _expect(await self._call("POST", f"{path}/logout"), 204)
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
        _expect(await self._call("PUT", path, json={"enabled": enabled}), 204)
        if not enabled:
            # A disabled user's sessions end now, not when their refresh tokens expire.
            _expect(await self._call("POST", f"{path}/logout"), 204)

    async def end_sessions(self, realm: str, user_id: str) -> None:
        _expect(await self._call("POST", f"{self._user_path(realm, user_id)}/logout"), 204)

    async def set_user_roles(self, realm: str, user_id: str, roles: frozenset[str]) -> None:
        path = self._user_path(realm, user_id)
        wanted = await self._roles(realm, roles)
        current = _expect(await self._call("GET", f"{path}/role-mappings/realm"), 200).json()
        have = {r["name"] for r in current if _managed(r["name"])}
        add = [r for r in wanted if r["name"] not in have]
        remove = [r for r in current if _managed(r["name"]) and r["name"] not in roles]
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
        _check(realm, _REALM, "realm")
        _check(client_id, _CLIENT_ID, "client_id")
        tenant = (await self._realm(realm)).get("attributes", {}).get(TENANT_ATTRIBUTE)
        known = await self._roles(realm, roles)
        rep = self._client_representation(client_id, public, redirect_uris, tenant)
        response = await self._call("POST", f"/admin/realms/{realm}/clients", json=rep)
        if response.status_code == 409:
            existing = await self._client(realm, client_id)
            if bool(existing.get("publicClient")) != public:
                raise IdentityConflictError("a client with this id exists with another type")
            internal_id = existing["id"]
            redirect_uris = tuple(existing.get("redirectUris", ()))
        else:
            internal_id = _expect(response, 201).headers["location"].rsplit("/", 1)[-1]
        secret = None
        if not public:
            path = f"/admin/realms/{realm}/clients/{internal_id}"
            if known:
                account = await self._call("GET", f"{path}/service-account-user")
                account_id = _expect(account, 200).json()["id"]
                await self._map_roles("POST", realm, account_id, known)
            secret = _expect(await self._call("GET", f"{path}/client-secret"), 200).json()["value"]
        return RealmClient(client_id, public, redirect_uris, secret)

    async def set_client_enabled(self, realm: str, client_id: str, enabled: bool) -> None:
        path = f"/admin/realms/{realm}/clients/{(await self._client(realm, client_id))['id']}"
        _expect(await self._call("PUT", path, json={"enabled": enabled}), 204)

    async def rotate_client_secret(self, realm: str, client_id: str) -> str:
        internal_id = (await self._client(realm, client_id))["id"]
        path = f"/admin/realms/{realm}/clients/{internal_id}/client-secret"
        return str(_expect(await self._call("POST", path), 200).json()["value"])

    async def delete_client(self, realm: str, client_id: str) -> None:
        try:
            internal_id = (await self._client(realm, client_id))["id"]
        except IdentityNotFoundError:
            return
        response = await self._call("DELETE", f"/admin/realms/{realm}/clients/{internal_id}")
        if response.status_code != 404:
            _expect(response, 204)

    async def _client(self, realm: str, client_id: str) -> dict[str, Any]:
        _check(realm, _REALM, "realm")
        _check(client_id, _CLIENT_ID, "client_id")
        found = _expect(
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
        roles = TENANT_ROLES if tenant_id else OPERATOR_ROLES
        return {
            "realm": realm,
            "enabled": True,
            "attributes": {TENANT_ATTRIBUTE: tenant} if tenant else {},
            "registrationAllowed": False,
            "registrationEmailAsUsername": True,
            "loginWithEmailAllowed": True,
            "duplicateEmailsAllowed": False,
            "editUsernameAllowed": False,
            "bruteForceProtected": True,
            "failureFactor": 10,
            "waitIncrementSeconds": 60,
            "maxFailureWaitSeconds": 900,
            "accessTokenLifespan": 300,
            # Refresh tokens rotate and are single use, as with the built-in provider (ADR 0126).
            "revokeRefreshToken": True,
            "refreshTokenMaxReuse": 0,
            "roles": {"realm": [{"name": r} for r in roles]},
            "clients": [
                self._client_representation(
                    WEB_CLIENT, True, self._web_callbacks(realm, tenant), tenant
                ),
                self._client_representation(CLI_CLIENT, True, (CLI_REDIRECT,), tenant),
            ],
            "components": {
                "org.keycloak.userprofile.UserProfileProvider": [
                    {
                        "providerId": "declarative-user-profile",
                        "subComponents": {},
                        "config": {"kc.user.profile.config": [_USER_PROFILE]},
                    }
                ]
            },
        }

    def _client_representation(
        self, client_id: str, public: bool, redirect_uris: tuple[str, ...], tenant: str | None
    ) -> dict[str, Any]:
        mappers: list[dict[str, Any]] = [
            {
                "name": "plexica-audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {
                    "included.custom.audience": self.audience,
                    "access.token.claim": "true",
                    "introspection.token.claim": "true",
                    "id.token.claim": "false",
                },
            }
        ]
        if tenant:
            mappers.append(
                {
                    "name": "plexica-tenant-id",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-hardcoded-claim-mapper",
                    "config": {
                        "claim.name": "tenant_id",
                        "claim.value": tenant,
                        "jsonType.label": "String",
                        "access.token.claim": "true",
                        "id.token.claim": "true",
                        "userinfo.token.claim": "true",
                        "introspection.token.claim": "true",
                    },
                }
            )
        browser = public or bool(redirect_uris)
        if not browser:
            # Only client credentials reach this client: its tokens are service tokens.
            mappers.append(
                {
                    "name": "plexica-service",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-hardcoded-claim-mapper",
                    "config": {
                        "claim.name": "service",
                        "claim.value": "true",
                        "jsonType.label": "boolean",
                        "access.token.claim": "true",
                        "id.token.claim": "false",
                        "userinfo.token.claim": "false",
                        "introspection.token.claim": "true",
                    },
                }
            )
        return {
            "clientId": client_id,
            "protocol": "openid-connect",
            "publicClient": public,
            "standardFlowEnabled": browser,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "serviceAccountsEnabled": not public,
            "redirectUris": list(redirect_uris),
            "webOrigins": ["+"] if browser else [],
            "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+"},
            "protocolMappers": mappers,
        }

    # -- plumbing -----------------------------------------------------------------------------

    def _user_path(self, realm: str, user_id: str) -> str:
        _check(realm, _REALM, "realm")
        _check(user_id, _USER_ID, "user_id")
        return f"/admin/realms/{realm}/users/{user_id}"

    async def _realm(self, realm: str) -> dict[str, Any]:
        _check(realm, _REALM, "realm")
        return dict(_expect(await self._call("GET", f"/admin/realms/{realm}"), 200).json())

    async def _realm_roles(self, realm: str) -> list[str]:
        roles = _expect(await self._call("GET", f"/admin/realms/{realm}/roles"), 200).json()
        return [r["name"] for r in roles if _managed(r["name"])]

    async def _roles(self, realm: str, names: frozenset[str]) -> list[dict[str, Any]]:
        """The realm's representations of ``names``; unknown names are bad input."""
        if not names:
            return []
        roles = _expect(await self._call("GET", f"/admin/realms/{realm}/roles"), 200).json()
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
        _expect(await self._call(method, path, json=roles), 204)

    async def _paged(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = {**params, "first": str(len(out)), "max": str(_PAGE)}
            batch = _expect(await self._call("GET", path, params=page), 200).json()
            out.extend(batch)
            if len(batch) < _PAGE:
                return out

    async def _admin_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            if not renew and self._token and time.monotonic() < self._token_expires:
                return self._token
            user, password = self._admin
            form = {
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": user,
                "password": password,
            }
            response = await self._send(
                "POST", "/realms/master/protocol/openid-connect/token", data=form
            )
            if response.status_code in (400, 401):
                raise IdentityUnavailableError("the identity provider refused the admin login")
            body = _expect(response, 200).json()
            self._token = str(body["access_token"])
            self._token_expires = time.monotonic() + float(body["expires_in"]) - _TOKEN_MARGIN_S
            return self._token

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An admin request; a 401 (token revoked or expired early) is retried once."""
        response = await self._send(method, path, token=await self._admin_token(), **kwargs)
        if response.status_code == 401:
            token = await self._admin_token(renew=True)
            response = await self._send(method, path, token=token, **kwargs)
        if response.status_code == 404 and method != "DELETE":
            raise IdentityNotFoundError("not found in the identity provider")
        return response

    async def _send(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise IdentityUnavailableError(
                "the identity provider is unreachable", details={"reason": type(exc).__name__}
            ) from exc
        if response.status_code >= 500:
            raise IdentityUnavailableError(
                "the identity provider failed", details={"status": response.status_code}
            )
        return response


def _expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code == status:
        return response
    if response.status_code == 400:
        raise IdentityInvalidError(
            "the identity provider rejected the request", details=_error_text(response)
        )
    if response.status_code == 409:
        raise IdentityConflictError("conflict in the identity provider")
    raise IdentityProviderError(
        "unexpected answer from the identity provider",
        details={"status": response.status_code, "error": _error_text(response)},
    )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("errorMessage") or body.get("error_description") or body)[:200]
    return str(body)[:200]
