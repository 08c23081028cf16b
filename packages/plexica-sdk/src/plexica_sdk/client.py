"""A typed client for the core API, authenticated with the plugin's service token."""

from __future__ import annotations

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


class CoreClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 5.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, transport=transport, timeout=timeout
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
