"""A typed client for the core API, authenticated with the plugin's service token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict

from plexica_sdk.errors import PlexicaError, UnavailableError

T = TypeVar("T", bound=BaseModel)


class CoreInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    version: str


class CoreInstallation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tenant_id: UUID
    plugin_id: str
    version: str
    status: str
    settings: dict[str, Any]


class ClientCredentials(httpx.Auth):
    """Service tokens from a service client (OAuth client credentials), fetched when needed,
    reused until shortly before they expire, and fetched again once when the core refuses one
    (the client was disabled or its secret rotated: its earlier tokens are cut off)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        margin_seconds: float = 30.0,
    ) -> None:
        self.token_url = token_url
        self._client = (client_id, client_secret)
        self._transport = transport
        self.margin = margin_seconds
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires:
                async with httpx.AsyncClient(transport=self._transport, timeout=10.0) as http:
                    try:
                        response = await http.post(
                            self.token_url,
                            data={"grant_type": "client_credentials"},
                            auth=self._client,
                        )
                    except httpx.HTTPError as exc:
                        raise UnavailableError(
                            f"token endpoint unreachable: {type(exc).__name__}"
                        ) from None
                if response.status_code != 200:
                    raise PlexicaError(
                        "the identity provider refused the service client",
                        code="service_client_refused",
                        status=401,
                    )
                body = response.json()
                self._token = str(body["access_token"])
                lifetime = float(body.get("expires_in", 60))
                self._expires = time.monotonic() + max(lifetime - self.margin, lifetime / 2)
            return self._token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self.token(renew=True)}"
            yield request


class CoreClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        """``token``: a fixed service token; ``auth`` (e.g. ``ClientCredentials``) instead."""
        headers = {"Authorization": f"Bearer {token}"} if token and auth is None else {}
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            auth=auth,
            transport=transport,
            timeout=timeout,
        )

    async def _get(self, path: str, model: type[T]) -> T:
        try:
            response = await self.http.get(path)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"core API unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            error = response.json().get("error", {}) if response.content else {}
            raise PlexicaError(
                error.get("message", "core API error"),
                code=error.get("code", "core_error"),
                status=response.status_code,
            )
        return model.model_validate(response.json())

    async def info(self) -> CoreInfo:
        return await self._get("/v1/info", CoreInfo)

    async def installation(self, tenant_id: UUID, plugin_id: str) -> CoreInstallation:
        return await self._get(f"/v1/tenants/{tenant_id}/plugins/{plugin_id}", CoreInstallation)

    async def aclose(self) -> None:
        await self.http.aclose()
