"""The S3 adapter (MinIO, SeaweedFS, AWS) on aiobotocore: one client per process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from plexica.storage.errors import StorageUnavailableError
from plexica.storage.keys import validate_bucket
from plexica.storage.store import Method, ObjectInfo, ObjectPage, PresignedUrl
from plexica_sdk.errors import NotFoundError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

MIN_PART_SIZE = 5 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    kind = "s3"

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        part_size: int = 8 * 1024 * 1024,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError("S3 multipart parts are at least 5 MiB")
        self.endpoint = endpoint.rstrip("/")
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self.part_size = part_size
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    async def start(self) -> None:
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                region_name=self._region,
                config=config,
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise StorageUnavailableError("the object store is not started")
        return self._client

    async def check(self) -> None:
        try:
            await self.client.list_buckets()
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"object store check failed: {exc}") from exc

    async def create_bucket(self, bucket: str) -> None:
        try:
            await self.client.create_bucket(Bucket=validate_bucket(bucket))
        except ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def bucket_exists(self, bucket: str) -> bool:
        try:
            await self.client.head_bucket(Bucket=validate_bucket(bucket))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True

    async def delete_bucket(self, bucket: str) -> None:
        validate_bucket(bucket)
        if not await self.bucket_exists(bucket):
            return
        uploads = await self.client.list_multipart_uploads(Bucket=bucket)
        for upload in uploads.get("Uploads", []):
            await self.client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": o["Key"]} for o in page.get("Contents", [])
            ]
            if keys:
                await self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        try:
            await self.client.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise

    async def begin_upload(self, bucket: str, key: str, content_type: str) -> _S3Upload:
        return _S3Upload(self, validate_bucket(bucket), key, content_type)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            meta = await self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return _info(key, meta)

    async def get(self, bucket: str, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        try:
            response = await self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFoundError("no such object") from None
            raise
        body = response["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in body.iter_chunks(256 * 1024):
                    yield chunk
            finally:
                body.close()

        return _info(key, response), chunks()

    async def list(self, bucket: str, prefix: str, after: str | None, limit: int) -> ObjectPage:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": limit}
        if after:
            params["StartAfter"] = after
        try:
            page = await self.client.list_objects_v2(**params)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return ObjectPage([], None)
            raise
        items = [
            ObjectInfo(
                key=o["Key"],
                size=int(o["Size"]),
                content_type="",
                etag=str(o.get("ETag", "")).strip('"'),
                modified=o["LastModified"],
            )
            for o in page.get("Contents", [])
        ]
        more = bool(page.get("IsTruncated")) and bool(items)
        return ObjectPage(items, items[-1].key if more else None)

    async def delete(self, bucket: str, key: str) -> None:
        await self.client.delete_object(Bucket=bucket, Key=key)

    async def presign(
        self,
        bucket: str,
        key: str,
        method: Method,
        expires_in: int,
        *,
        content_type: str | None = None,
        size: int | None = None,
    ) -> PresignedUrl:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        headers: dict[str, str] = {}
        if method == "PUT":
            # Signed into the URL: S3 refuses an upload of another length or type.
            assert content_type is not None
            assert size is not None
            params["ContentType"] = content_type
            params["ContentLength"] = size
            headers = {"Content-Type": content_type, "Content-Length": str(size)}
        operation = "get_object" if method == "GET" else "put_object"
        url = await self.client.generate_presigned_url(
            operation, Params=params, ExpiresIn=expires_in
        )
        return PresignedUrl(url, method, headers, datetime.now(UTC) + timedelta(seconds=expires_in))


def _info(key: str, meta: Any) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(meta["ContentLength"]),
        content_type=str(meta.get("ContentType") or "application/octet-stream"),
        etag=str(meta.get("ETag", "")).strip('"'),
        modified=meta["LastModified"],
    )


class _S3Upload:
    """Buffers up to one part; switches to a multipart upload when the object outgrows it.

    Up to ``IN_FLIGHT`` parts upload concurrently while the next one is being received: the
    transfer to the store overlaps the transfer from the client, with bounded memory.
    """

    IN_FLIGHT = 3

    def __init__(self, store: S3Store, bucket: str, key: str, content_type: str) -> None:
        self._store = store
        self._bucket = bucket
        self._key = key
        self._type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._next_part = 1
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self.size += len(chunk)
        while len(self._buffer) >= self._store.part_size:
            part = bytes(self._buffer[: self._store.part_size])
            del self._buffer[: self._store.part_size]
            await self._start_part(part)

    async def _start_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = await self._store.client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._type
            )
            self._upload_id = created["UploadId"]
        while len(self._pending) >= self.IN_FLIGHT:
            await self._wait(asyncio.FIRST_COMPLETED)
        number, self._next_part = self._next_part, self._next_part + 1
        self._pending.add(asyncio.create_task(self._upload_part(number, data)))

    async def _wait(self, when: str) -> None:
        done, self._pending = await asyncio.wait(self._pending, return_when=when)
        for task in done:
            task.result()

    async def _upload_part(self, number: int, data: bytes) -> None:
        assert self._upload_id is not None
        result = await self._store.client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": result["ETag"]})

    async def commit(self) -> ObjectInfo:
        client = self._store.client
        if self._upload_id is None:
            await client.put_object(
                Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), ContentType=self._type
            )
        else:
            if self._buffer:
                await self._start_part(bytes(self._buffer))
            if self._pending:
                await self._wait(asyncio.ALL_COMPLETED)
            parts = sorted(self._parts, key=lambda p: int(p["PartNumber"]))
            await client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        self._buffer.clear()
        info = await self._store.head(self._bucket, self._key)
        assert info is not None
        return info

    async def abort(self) -> None:
        self._buffer.clear()
        for task in self._pending:
            task.cancel()
        if self._pending:
            await asyncio.wait(self._pending)
        self._pending.clear()
        if self._upload_id is not None:
            try:
                await self._store.client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
            except ClientError as exc:
                if _code(exc) not in ("NoSuchUpload", *_MISSING):
                    raise
            self._upload_id = None

    @property
    def parts(self) -> int:
        return len(self._parts)
