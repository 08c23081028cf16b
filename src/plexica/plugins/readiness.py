"""Readiness of the plugin service: an install commits only once the plugin answers ready."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import httpx
from starlette.types import ASGIApp

from plexica.kit.provisioning import TenantRef
from plexica.plugins.schemas import PluginNotReadyError
from plexica_sdk.manifest import Manifest

ReadinessProbe = Callable[[Manifest, TenantRef], Awaitable[None]]


class HttpReadinessProbe:
    """Polls the plugin's readiness path until it answers 200 or ``timeout`` passes.

    ``endpoints`` maps a plugin id to its base URL (distributed) or its ASGI app (embedded)."""

    def __init__(
        self,
        endpoints: Mapping[str, str | ASGIApp],
        *,
        timeout: float = 10.0,
        interval: float = 0.1,
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.interval = interval

    async def __call__(self, manifest: Manifest, tenant: TenantRef) -> None:
        target = self.endpoints.get(manifest.id)
        if target is None:
            raise PluginNotReadyError(f"plugin {manifest.id} is not deployed")
        if isinstance(target, str):
            client = httpx.AsyncClient(base_url=target, timeout=2.0)
        else:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=target), base_url="http://plugin", timeout=2.0
            )
        last = "no answer"
        async with client:
            deadline = asyncio.get_running_loop().time() + self.timeout
            while True:
                try:
                    response = await client.get(manifest.api.readiness_path)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                if asyncio.get_running_loop().time() >= deadline:
                    raise PluginNotReadyError(
                        f"plugin {manifest.id} did not become ready in {self.timeout:g} s ({last})"
                    )
                await asyncio.sleep(self.interval)
