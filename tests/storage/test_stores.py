"""Both object stores against real backends: SeaweedFS over S3 and a temporary folder."""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.storage import repository
from plexica.storage.errors import InvalidKeyError, StorageUnavailableError
from plexica.storage.local import LocalStore
from plexica.storage.provisioning import BucketStep
from plexica.storage.s3 import S3Store, _S3Upload
from plexica.storage.store import ObjectStore
from plexica_sdk.errors import NotFoundError
from tests.storage.conftest import new_slug


async def _put(store: ObjectStore, bucket: str, key: str, data: bytes, chunk: int = 65536) -> None:
    upload = await store.begin_upload(bucket, key, "application/octet-stream")
    for i in range(0, len(data), chunk):
        await upload.write(data[i : i + chunk])
    await upload.commit()


async def _read(store: ObjectStore, bucket: str, key: str) -> bytes:
    _, chunks = await store.get(bucket, key)
    return b"".join([c async for c in chunks])


async def test_put_get_list_delete(store: ObjectStore) -> None:
    bucket = "tenant-" + new_slug()
    await store.create_bucket(bucket)
    await store.create_bucket(bucket)  # idempotent
    for i in range(5):
        await _put(store, bucket, f"docs/{i}.bin", bytes([i]) * (i + 1))
    await _put(store, bucket, "other/x.bin", b"x")

    assert await _read(store, bucket, "docs/3.bin") == b"\x03" * 4
    info = await store.head(bucket, "docs/3.bin")
    assert info is not None
    assert info.size == 4
    assert info.content_type == "application/octet-stream"

    first = await store.list(bucket, "docs/", None, 2)
    assert [o.key for o in first.items] == ["docs/0.bin", "docs/1.bin"]
    assert first.next_after == "docs/1.bin"
    rest = await store.list(bucket, "docs/", first.next_after, 10)
    assert [o.key for o in rest.items] == ["docs/2.bin", "docs/3.bin", "docs/4.bin"]
    assert rest.next_after is None

    await store.delete(bucket, "docs/3.bin")
    assert await store.head(bucket, "docs/3.bin") is None
    with pytest.raises(NotFoundError):
        await store.get(bucket, "docs/3.bin")

    await store.delete_bucket(bucket)
    await store.delete_bucket(bucket)  # idempotent
    assert not await store.bucket_exists(bucket)


async def test_abort_leaves_nothing(store: ObjectStore) -> None:
    bucket = "tenant-" + new_slug()
    await store.create_bucket(bucket)
    upload = await store.begin_upload(bucket, "big.bin", "application/octet-stream")
    await upload.write(os.urandom(6 * 1024 * 1024))
    await upload.abort()
    assert await store.head(bucket, "big.bin") is None
    assert (await store.list(bucket, "", None, 10)).items == []
    if isinstance(store, S3Store):
        uploads = await store.client.list_multipart_uploads(Bucket=bucket)
        assert uploads.get("Uploads", []) == []
    else:
        assert isinstance(store, LocalStore)
        assert list((store.root / ".tmp").iterdir()) == []
    await store.delete_bucket(bucket)


async def test_multipart_upload_of_a_file_larger_than_one_part(s3_store: S3Store) -> None:
    bucket = "tenant-" + new_slug()
    await s3_store.create_bucket(bucket)
    data = os.urandom(s3_store.part_size * 2 + 12345)
    upload = await s3_store.begin_upload(bucket, "large/file.bin", "application/octet-stream")
    assert isinstance(upload, _S3Upload)
    for i in range(0, len(data), 1024 * 1024):
        await upload.write(data[i : i + 1024 * 1024])
    info = await upload.commit()
    assert upload.parts == 3
    assert info.size == len(data)
    assert info.etag.endswith("-3")  # the ETag of a multipart object names its part count
    assert await _read(s3_store, bucket, "large/file.bin") == data
    await s3_store.delete_bucket(bucket)


async def test_wrong_secret_is_refused(s3: dict[str, Any]) -> None:
    store = S3Store(s3["endpoint"], s3["access_key"], "not-the-secret-" + uuid.uuid4().hex)
    await store.start()
    try:
        with pytest.raises(StorageUnavailableError):
            await store.check()
        with pytest.raises(ClientError) as exc:
            await store.create_bucket("tenant-" + new_slug())
        assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    finally:
        await store.close()


async def test_right_secret_passes_the_check(s3_store: S3Store) -> None:
    await s3_store.check()


async def test_local_store_never_leaves_the_bucket_folder(local_store: LocalStore) -> None:
    await local_store.create_bucket("tenant-aaa")
    await local_store.create_bucket("tenant-bbb")
    await _put(local_store, "tenant-bbb", "secret.txt", b"b's data")
    for key in ["../tenant-bbb/secret.txt", "/etc/passwd", "a/../../tenant-bbb/secret.txt"]:
        with pytest.raises(InvalidKeyError):
            local_store.path("tenant-aaa", key)
        with pytest.raises(InvalidKeyError):
            await local_store.get("tenant-aaa", key)
    # A symbolic link planted inside a bucket is not followed out of it.
    (local_store.root / "tenant-aaa" / "link").symlink_to(local_store.root / "tenant-bbb")
    with pytest.raises(Exception, match="leaves the bucket"):
        local_store.path("tenant-aaa", "link/secret.txt")


async def test_presigned_get_on_s3_works_then_expires(s3_store: S3Store) -> None:
    import asyncio

    bucket = "tenant-" + new_slug()
    await s3_store.create_bucket(bucket)
    await _put(s3_store, bucket, "a.txt", b"hello")
    signed = await s3_store.presign(bucket, "a.txt", "GET", 2)
    async with httpx.AsyncClient() as http:
        assert (await http.get(signed.url)).content == b"hello"
        await asyncio.sleep(3.1)
        assert (await http.get(signed.url)).status_code == 403
    await s3_store.delete_bucket(bucket)


async def test_bucket_step_is_idempotent(store: ObjectStore) -> None:
    tenant = TenantRef(uuid.uuid4(), new_slug(), "T", "admin@example.com")
    step = BucketStep(store)
    await step.apply(tenant)
    await step.apply(tenant)
    assert await store.bucket_exists(tenant.bucket)
    await _put(store, tenant.bucket, "a/b.bin", b"data")
    await step.purge(tenant)
    await step.purge(tenant)
    assert not await store.bucket_exists(tenant.bucket)
    await step.undo(tenant)


async def test_bucket_step_keeps_usage_with_the_bucket(s3_store: S3Store, db: Database) -> None:
    tenant = TenantRef(uuid.uuid4(), new_slug(), "T", "admin@example.com")
    step = BucketStep(s3_store, db)
    await step.apply(tenant)
    async with db.session() as session:
        row = await repository.get(session, tenant.bucket)
    assert row is not None
    assert row.tenant_id == tenant.id
    await step.purge(tenant)
    async with db.session() as session:
        assert await repository.get(session, tenant.bucket) is None
    assert not await s3_store.bucket_exists(tenant.bucket)
