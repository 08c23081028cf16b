"""Files for plugins: a client of the core's ``/v1/files`` API confined to the plugin's prefix.

Every key a plugin passes is relative to ``plugins/<plugin-id>/`` in its tenant's bucket; keys
that could climb out of that prefix are refused here, before a request is made, and the core
checks them again. The bucket is the caller's tenant, taken by the core from the token.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from plexica_sdk.errors import PlexicaError

_PLUGIN_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
TokenSource = str | Callable[[], Awaitable[str]]


class FileInfo(BaseModel):
    key: str
    size: int
    content_type: str | None = None
    etag: str
    modified: datetime


class SignedUrl(BaseModel):
    url: str
    method: Literal["GET", "PUT"]
    headers: dict[str, str]
    expires_at: datetime


def _check_relative(key: str) -> str:
    key = unicodedata.normalize("NFC", key)
    segments = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(unicodedata.category(ch).startswith("C") for ch in key)
        or any(s in ("", ".", "..") for s in segments)
    ):
        raise PlexicaError(f"invalid key {key!r}", code="invalid_key", status=400)
    return key


class PluginFiles:
    """Store and fetch a plugin's files in the caller's tenant bucket."""

    def __init__(
        self,
        plugin_id: str,
        token: TokenSource,
        *,
        base_url: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not _PLUGIN_ID.match(plugin_id):
            raise ValueError(f"not a plugin id: {plugin_id!r}")
        if client is None and base_url is None:
            raise ValueError("give the core's base URL or an HTTP client for it")
        self.prefix = f"plugins/{plugin_id}/"
        self._token = token
        self._client = client or httpx.AsyncClient(base_url=str(base_url), timeout=60)

    def key(self, key: str) -> str:
        """The full key in the tenant bucket for a key relative to the plugin's prefix."""
        return self.prefix + _check_relative(key)

    async def _headers(self) -> dict[str, str]:
        token = self._token if isinstance(self._token, str) else await self._token()
        return {"Authorization": f"Bearer {token}"}

    def _path(self, key: str) -> str:
        return "/v1/files/objects/" + quote(self.key(key), safe="/")

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, url, headers=await self._headers(), **kwargs)
        _raise_for_error(response)
        return response

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        content_type: str | None = None,
    ) -> FileInfo:
        extra = {"Content-Type": content_type} if content_type else {}
        response = await self._client.put(
            self._path(key), content=data, headers=await self._headers() | extra
        )
        _raise_for_error(response)
        return self._relative(FileInfo.model_validate(response.json()))

    async def get(self, key: str) -> bytes:
        return (await self._send("GET", self._path(key))).content

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        request = self._client.build_request("GET", self._path(key), headers=await self._headers())
        response = await self._client.send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                _raise_for_error(response)
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def delete(self, key: str) -> None:
        await self._send("DELETE", self._path(key))

    async def list(self, prefix: str = "", *, page_size: int = 100) -> AsyncIterator[FileInfo]:
        full = self.prefix + (_check_relative(prefix.rstrip("/")) + "/" if prefix else "")
        if prefix and not prefix.endswith("/"):
            full = full[:-1]
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"prefix": full, "limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = (await self._send("GET", "/v1/files", params=params)).json()
            for item in page["items"]:
                yield self._relative(FileInfo.model_validate(item))
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def presign(
        self,
        key: str,
        method: Literal["GET", "PUT"] = "GET",
        *,
        expires_in: int | None = None,
        content_type: str | None = None,
        size: int | None = None,
    ) -> SignedUrl:
        body = {
            "key": self.key(key),
            "method": method,
            "expires_in": expires_in,
            "content_type": content_type,
            "size": size,
        }
        response = await self._send("POST", "/v1/files/presign", json=body)
        return SignedUrl.model_validate(response.json())

    def _relative(self, info: FileInfo) -> FileInfo:
        return info.model_copy(update={"key": info.key.removeprefix(self.prefix)})

    async def aclose(self) -> None:
        await self._client.aclose()


def _raise_for_error(response: httpx.Response) -> None:
    if not response.is_error:
        return
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:200], None
    raise PlexicaError(message, code=code, status=response.status_code, details=details)
