"""The object store's platform policy (ADR 0220), the chart's own file, on the tests' real S3
server (SeaweedFS, through its IAM API, as the chart's Job does through MinIO's admin API): a user
holding only that policy does every storage operation of the platform on a tenant bucket, with
the platform's own adapter, and is refused on any other bucket."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from plexica.kit.provisioning import BUCKET_PREFIX
from plexica.storage.s3 import MIN_PART_SIZE, S3Store
from tests.deploy.conftest import STORAGE_PLATFORM_POLICY
from tests.storage.conftest import new_slug

DENIED = {"AccessDenied", "403"}  # a HEAD refusal has no body, hence no code but the status


async def _wait_until(check: Callable[[], Awaitable[object]], deadline: float = 60.0) -> None:
    """Run ``check`` until it stops raising: the server applies IAM changes asynchronously."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            await check()
            return
        except ClientError:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def platform_user(s3: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
    """A user of its own with the chart's policy and nothing else; removed afterwards."""
    name = "plexica-platform-" + uuid.uuid4().hex[:8]
    async with AsyncExitStack() as stack:
        iam: Any = await stack.enter_async_context(
            get_session().create_client(
                "iam",
                endpoint_url=s3["endpoint"],
                aws_access_key_id=s3["access_key"],
                aws_secret_access_key=s3["secret_key"],
                region_name="us-east-1",
            )
        )
        created = await iam.create_policy(
            PolicyName=name, PolicyDocument=STORAGE_PLATFORM_POLICY.read_text()
        )
        arn = created["Policy"]["Arn"]
        await iam.create_user(UserName=name)
        key = (await iam.create_access_key(UserName=name))["AccessKey"]
        await iam.attach_user_policy(UserName=name, PolicyArn=arn)
        yield key["AccessKeyId"], key["SecretAccessKey"]
        await iam.detach_user_policy(UserName=name, PolicyArn=arn)
        await iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
        await iam.delete_user(UserName=name)
        await iam.delete_policy(PolicyArn=arn)


@pytest.fixture
async def platform_store(
    s3: dict[str, Any], platform_user: tuple[str, str]
) -> AsyncIterator[S3Store]:
    store = S3Store(s3["endpoint"], *platform_user, part_size=MIN_PART_SIZE)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def root_store(s3: dict[str, Any]) -> AsyncIterator[S3Store]:
    store = S3Store(s3["endpoint"], s3["access_key"], s3["secret_key"], part_size=MIN_PART_SIZE)
    await store.start()
    yield store
    await store.close()


async def _put(store: S3Store, bucket: str, key: str, data: bytes) -> None:
    upload = await store.begin_upload(bucket, key, "application/octet-stream")
    for i in range(0, len(data), 1024 * 1024):
        await upload.write(data[i : i + 1024 * 1024])
    await upload.commit()


async def _read(store: S3Store, bucket: str, key: str) -> bytes:
    _, chunks = await store.get(bucket, key)
    return b"".join([c async for c in chunks])


async def test_the_platform_policy_serves_a_tenant_bucket(platform_store: S3Store) -> None:
    store = platform_store
    bucket = BUCKET_PREFIX + new_slug()
    await _wait_until(lambda: store.create_bucket(bucket))
    await store.create_bucket(bucket)  # idempotent, as provisioning retries it
    await store.check()  # the readiness check lists the buckets
    assert await store.bucket_exists(bucket)
    await _put(store, bucket, "notes/a.txt", b"hello")
    large = bytes(range(256)) * (MIN_PART_SIZE // 256 + 4096)  # two parts: a multipart upload
    await _put(store, bucket, "large.bin", large)
    assert await _read(store, bucket, "notes/a.txt") == b"hello"
    assert await _read(store, bucket, "large.bin") == large
    info = await store.head(bucket, "large.bin")
    assert info is not None
    assert info.size == len(large)
    page = await store.list(bucket, "", None, 10)
    assert [o.key for o in page.items] == ["large.bin", "notes/a.txt"]
    aborted = await store.begin_upload(bucket, "aborted.bin", "application/octet-stream")
    await aborted.write(large)  # one part sent: a multipart upload to abort
    await aborted.abort()
    async with httpx.AsyncClient() as http:
        signed = await store.presign(bucket, "notes/a.txt", "GET", 300)
        assert (await http.get(signed.url)).content == b"hello"
        signed = await store.presign(
            bucket, "direct.txt", "PUT", 300, content_type="text/plain", size=6
        )
        put = await http.put(signed.url, content=b"direct", headers=signed.headers)
        assert put.status_code == 200, put.text
    assert await _read(store, bucket, "direct.txt") == b"direct"
    await store.delete(bucket, "direct.txt")
    assert await store.head(bucket, "direct.txt") is None
    # A half-finished upload left behind, as a crash would: deleting the bucket aborts it.
    left = await store.begin_upload(bucket, "left.bin", "application/octet-stream")
    await left.write(large)
    await store.delete_bucket(bucket)
    give_up = time.monotonic() + 60  # the server drops a bucket's collection asynchronously
    while await store.bucket_exists(bucket):
        assert time.monotonic() < give_up, f"{bucket} still exists"
        await asyncio.sleep(0.2)


async def test_the_platform_policy_refuses_other_buckets(
    platform_store: S3Store, root_store: S3Store
) -> None:
    store = platform_store
    probe = BUCKET_PREFIX + new_slug()
    await _wait_until(lambda: store.create_bucket(probe))  # the user is in effect
    await store.delete_bucket(probe)
    other = "other-" + new_slug()
    await root_store.create_bucket(other)
    await _put(root_store, other, "secret.txt", b"not the platform's")
    refused: list[Callable[[], Awaitable[object]]] = [
        lambda: store.create_bucket("other-" + new_slug()),
        lambda: store.head(other, "secret.txt"),
        lambda: store.get(other, "secret.txt"),
        lambda: store.list(other, "", None, 10),
        lambda: store.delete(other, "secret.txt"),
        lambda: store.delete_bucket(other),
        lambda: _put(store, other, "planted.txt", b"x"),
    ]
    for attempt in refused:
        with pytest.raises(ClientError) as caught:
            await attempt()
        assert caught.value.response["Error"]["Code"] in DENIED, caught.value.response
    async with httpx.AsyncClient() as http:
        signed = await store.presign(other, "secret.txt", "GET", 300)
        assert (await http.get(signed.url)).status_code == 403
    assert await _read(root_store, other, "secret.txt") == b"not the platform's"
    assert await root_store.head(other, "planted.txt") is None
    await root_store.delete_bucket(other)
