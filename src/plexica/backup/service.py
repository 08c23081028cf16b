"""Tenant backup and restore.

An archive (``archive``) holds the tenant schema's dump and the tenant's objects. It is written
to ``<out>.partial`` and renamed when complete. A restore refuses to overwrite an existing schema
or a non-empty bucket, loads the schema in one transaction (``postgres``), then the objects; if
anything fails it removes what it made, so a failed restore leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from plexica.backup.archive import (
    FORMAT,
    KIND,
    InvalidArchiveError,
    add_bytes,
    add_file,
    check_manifest,
    digest,
    read_json,
)
from plexica.backup.postgres import drop_schema, dump_schema, libpq, load_schema, schema_exists
from plexica.kit.db import Database
from plexica.kit.provisioning import bucket_of, schema_of
from plexica.storage.keys import validate_key
from plexica.storage.service import Scope, StorageService
from plexica.storage.store import ObjectStore
from plexica_sdk.errors import ConflictError, NotFoundError

PARALLEL = 8
SMALL = 8 * 1024 * 1024
Progress = Callable[[int, int | None], None]  # (objects done, total or None while unknown)


@dataclass(frozen=True)
class Summary:
    slug: str
    objects: int
    bytes: int
    seconds: float


async def _all_objects(store: ObjectStore, bucket: str) -> AsyncIterator[str]:
    after: str | None = None
    while True:
        page = await store.list(bucket, "", after, 1000)
        for item in page.items:
            yield item.key
        if page.next_after is None:
            return
        after = page.next_after


async def backup_tenant(
    database_url: str,
    store: ObjectStore,
    slug: str,
    out: Path,
    progress: Progress | None = None,
    *,
    extra: dict[str, bytes] | None = None,
    meta: dict[str, Any] | None = None,
) -> Summary:
    """``progress(done, total)`` counts the objects archived (the total is known at the end).
    ``extra`` files go in the archive beside the schema, with their digests in the manifest."""
    start = time.perf_counter()
    url, schema, bucket = libpq(database_url), schema_of(slug), bucket_of(slug)
    if not await asyncio.to_thread(schema_exists, url, schema):
        raise NotFoundError(f"tenant schema {schema} does not exist")
    partial = out.with_name(out.name + ".partial")
    objects = total = 0
    try:
        with tarfile.open(partial, "w") as tar:
            with tempfile.TemporaryFile() as dump:
                await asyncio.to_thread(dump_schema, url, schema, dump)
                digests = {"schema.sql": digest(dump)}
                add_file(tar, "schema.sql", dump)
            for name, data in (extra or {}).items():
                digests[name] = hashlib.sha256(data).hexdigest()
                add_bytes(tar, name, data)
            types: dict[str, str] = {}
            if await store.bucket_exists(bucket):
                batch: list[str] = []
                async for key in _all_objects(store, bucket):
                    batch.append(key)
                    if len(batch) == PARALLEL:
                        await _archive_batch(store, bucket, batch, tar, types)
                        batch = []
                        if progress is not None:
                            progress(len(types), None)
                if batch:
                    await _archive_batch(store, bucket, batch, tar, types)
                objects = len(types)
            if progress is not None:
                progress(objects, objects)
                total = sum(m.size for m in tar.getmembers() if m.name.startswith("objects/"))
            manifest = {
                "kind": KIND,
                "format": FORMAT,
                **(meta or {}),
                "digests": digests,
                "slug": slug,
                "schema": schema,
                "bucket": bucket,
                "objects": objects,
                "bytes": total,
                "created_at": datetime.now(UTC).isoformat(),
            }
            add_bytes(tar, "objects.json", json.dumps(types).encode())
            add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Summary(slug, objects, total, time.perf_counter() - start)


async def _archive_batch(
    store: ObjectStore, bucket: str, keys: list[str], tar: tarfile.TarFile, types: dict[str, str]
) -> None:
    """Download a few objects at once into temporary files, then append them in order."""
    opened: list[IO[bytes]] = []

    async def fetch(key: str) -> IO[bytes]:
        info, chunks = await store.get(bucket, key)
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
        opened.append(tmp)
        async for chunk in chunks:
            await asyncio.to_thread(tmp.write, chunk)
        types[key] = info.content_type
        return tmp

    try:
        files = await asyncio.gather(*(fetch(k) for k in keys))
        for key, tmp in zip(keys, files, strict=True):
            await asyncio.to_thread(add_file, tar, "objects/" + key, tmp)
    finally:
        for tmp in opened:
            tmp.close()


async def restore_tenant(
    database_url: str,
    store: ObjectStore,
    archive: Path,
    *,
    as_slug: str | None = None,
    db: Database | None = None,
    progress: Progress | None = None,
) -> Summary:
    """``progress(done, total)`` counts the archive's objects as they are sent to the store."""
    start = time.perf_counter()
    url = libpq(database_url)
    try:
        tar = tarfile.open(archive, "r")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise InvalidArchiveError(f"not a backup archive: {exc}") from None
    with tar:
        try:
            manifest = read_json(tar, "manifest.json")
            types: dict[str, str] = read_json(tar, "objects.json")
        except (KeyError, ValueError):
            raise InvalidArchiveError("the archive has no valid manifest") from None
        check_manifest(tar, manifest)
        source_slug = str(manifest["slug"])
        slug = as_slug or source_slug
        source_schema, schema, bucket = schema_of(source_slug), schema_of(slug), bucket_of(slug)
        if await asyncio.to_thread(schema_exists, url, schema):
            raise ConflictError(f"schema {schema} already exists in the target database")
        if await store.bucket_exists(bucket) and (await store.list(bucket, "", None, 1)).items:
            raise ConflictError(f"bucket {bucket} exists and is not empty")

        schema_made = bucket_made = False
        try:
            await asyncio.to_thread(load_schema, url, tar, source_schema, schema)
            schema_made = True
            await store.create_bucket(bucket)
            bucket_made = True
            objects, total = await load_objects(store, tar, bucket, types, progress)
            if db is not None:
                async with db.session() as session:
                    await StorageService(store).reconcile(session, Scope(bucket, None))
        except BaseException:
            if bucket_made:
                await store.delete_bucket(bucket)
            if schema_made:
                await asyncio.to_thread(drop_schema, url, schema)
            raise
    return Summary(slug, objects, total, time.perf_counter() - start)


async def load_objects(
    store: ObjectStore,
    tar: tarfile.TarFile,
    bucket: str,
    types: dict[str, str],
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Objects are read from the tar in order; small ones upload a few at a time."""
    objects = total = 0
    pending: set[asyncio.Task[None]] = set()

    async def put(key: str, source: IO[bytes]) -> None:
        upload = await store.begin_upload(bucket, key, types.get(key, "application/octet-stream"))
        try:
            while chunk := await asyncio.to_thread(source.read, 1024 * 1024):
                await upload.write(chunk)
            await upload.commit()
        except BaseException:
            await upload.abort()
            raise

    try:
        for member in tar.getmembers():
            if not member.name.startswith("objects/") or not member.isfile():
                continue
            key = validate_key(member.name.removeprefix("objects/"))
            data = tar.extractfile(member)
            if data is None:
                raise InvalidArchiveError(f"cannot read {member.name}")
            if member.size <= SMALL:
                while len(pending) >= PARALLEL:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                pending.add(asyncio.create_task(put(key, io.BytesIO(data.read()))))
            else:
                await put(key, data)
            objects += 1
            total += member.size
            if progress is not None:
                progress(objects, len(types))
        if pending:
            done, pending = await asyncio.wait(pending)
            for task in done:
                task.result()
    finally:
        # Let started uploads end rather than cancel them: a cancelled task's thread would go on
        # writing and could re-create the bucket after the caller has removed it.
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return objects, total
