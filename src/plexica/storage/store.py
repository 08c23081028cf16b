"""The one interface over object stores: S3 (distributed mode) and a local folder (embedded).

Writes are two-phase: ``begin_upload`` returns a staged upload that receives the bytes and
becomes visible only on ``commit`` (multipart completion on S3, rename on disk); ``abort`` leaves
nothing behind. The service decides between the two after checking the quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Method = Literal["GET", "PUT"]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    etag: str
    modified: datetime


@dataclass(frozen=True)
class ObjectPage:
    items: list[ObjectInfo]
    next_after: str | None


@dataclass(frozen=True)
class PresignedUrl:
    """``url`` is absolute for S3; for the local store it is a path served by the core."""

    url: str
    method: Method
    headers: dict[str, str]
    expires_at: datetime


class StagedUpload(Protocol):
    size: int

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> ObjectInfo: ...

    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise when the store cannot be reached with the configured credentials."""
        ...

    async def create_bucket(self, bucket: str) -> None: ...

    async def delete_bucket(self, bucket: str) -> None:
        """Delete the bucket and every object in it; nothing to do when it does not exist."""
        ...

    async def bucket_exists(self, bucket: str) -> bool: ...

    async def begin_upload(self, bucket: str, key: str, content_type: str) -> StagedUpload: ...

    async def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    async def get(self, bucket: str, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and its bytes as a stream; NotFoundError when absent."""
        ...

    async def list(self, bucket: str, prefix: str, after: str | None, limit: int) -> ObjectPage: ...

    async def delete(self, bucket: str, key: str) -> None: ...

    async def presign(
        self,
        bucket: str,
        key: str,
        method: Method,
        expires_in: int,
        *,
        content_type: str | None = None,
        size: int | None = None,
    ) -> PresignedUrl: ...
