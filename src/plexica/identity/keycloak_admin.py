"""Keycloak's Admin REST API: a connection with an admin token from the master realm, and its
answers turned into the platform's errors. Transport failures and 5xx answers become
``identity_unavailable`` (503), so that provisioning rolls back."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Self

import httpx

from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError, UnavailableError

_TOKEN_MARGIN_S = 15.0
_PAGE = 100
REALM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_USER_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_BUILTIN_ROLES = frozenset({"offline_access", "uma_authorization"})


class IdentityUnavailableError(UnavailableError):
    code = "identity_unavailable"


class IdentityInvalidError(PlexicaError):
    status, code = 422, "identity_invalid"


class IdentityNotFoundError(NotFoundError):
    code = "identity_not_found"


class IdentityConflictError(ConflictError):
    code = "identity_conflict"


class IdentityProviderError(PlexicaError):
    """Keycloak answered in a way the adapter does not expect (a bug or a version mismatch)."""

    status, code = 502, "identity_error"


def check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise IdentityInvalidError(f"invalid {what}", details={what: value[:100]})
    return value


def managed(role: str) -> bool:
    return role not in _BUILTIN_ROLES and not role.startswith("default-roles-")


class KeycloakAdminClient:
    """Requests to the Admin REST API (token renewed as needed) as the master realm's admin, or
    with ``service_account`` as a client of the master realm whose service account may create
    realms and administer those it made (ADR 0251): ``admin_user`` is then the client's ID and
    ``admin_password`` its secret."""

    def __init__(
        self,
        url: str,
        admin_user: str,
        admin_password: str,
        *,
        service_account: bool = False,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._admin = (admin_user, admin_password)
        self._service_account = service_account
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _paged(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = {**params, "first": str(len(out)), "max": str(_PAGE)}
            batch = expect(await self._call("GET", path, params=page), 200).json()
            out.extend(batch)
            if len(batch) < _PAGE:
                return out

    def _user_path(self, realm: str, user_id: str) -> str:
        check(realm, REALM_NAME, "realm")
        check(user_id, _USER_ID, "user_id")
        return f"/admin/realms/{realm}/users/{user_id}"

    async def _realm(self, realm: str) -> dict[str, Any]:
        check(realm, REALM_NAME, "realm")
        return dict(expect(await self._call("GET", f"/admin/realms/{realm}"), 200).json())

    async def _roles(self, realm: str, names: frozenset[str]) -> list[dict[str, Any]]:
        """The realm's representations of ``names``; unknown names are bad input."""
        if not names:
            return []
        roles = expect(await self._call("GET", f"/admin/realms/{realm}/roles"), 200).json()
        by_name = {r["name"]: r for r in roles if managed(r["name"])}
        unknown = sorted(names - by_name.keys())
        if unknown:
            raise IdentityInvalidError(
                "unknown role", code="identity_unknown_role", details={"roles": unknown}
            )
        return [{"id": by_name[n]["id"], "name": n} for n in sorted(names)]

    async def _admin_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            if not renew and self._token and time.monotonic() < self._token_expires:
                return self._token
            user, password = self._admin
            form = (
                {"grant_type": "client_credentials", "client_id": user, "client_secret": password}
                if self._service_account
                else {
                    "grant_type": "password",
                    "client_id": "admin-cli",
                    "username": user,
                    "password": password,
                }
            )
            response = await self._send(
                "POST", "/realms/master/protocol/openid-connect/token", data=form
            )
            if response.status_code in (400, 401):
                raise IdentityUnavailableError("the identity provider refused the admin login")
            body = expect(response, 200).json()
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


def expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code == status:
        return response
    if response.status_code == 400:
        raise IdentityInvalidError(
            "the identity provider rejected the request", details=error_text(response)
        )
    if response.status_code == 409:
        raise IdentityConflictError("conflict in the identity provider")
    if response.status_code == 403:
        # The platform's client administers only the platform's realms (ADR 0251).
        raise IdentityProviderError(
            "the platform may not administer this in Keycloak: a realm it did not make? "
            "(`plexica keycloak platform-client` grants the platform's realms)"
        )
    raise IdentityProviderError(
        "unexpected answer from the identity provider",
        details={"status": response.status_code, "error": error_text(response)},
    )


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("errorMessage") or body.get("error_description") or body)[:200]
    return str(body)[:200]
