"""Backup and restore of one tenant: schema rows and bucket objects, rehearsed for real.

Backed up from a local-folder deployment, deleted, restored in place, then restored into another
deployment (another database, SeaweedFS) under another slug; a refused restore leaves nothing.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from plexica.backup.service import backup_tenant, restore_tenant
from plexica.cli.main import app
from plexica.kit.db import Database
from plexica.kit.provisioning import schema_of
from plexica.settings import Settings
from plexica.storage.local import LocalStore
from plexica.storage.s3 import S3Store
from plexica.storage.store import ObjectStore
from plexica_sdk.errors import ConflictError
from tests.conftest import create_database
from tests.storage.conftest import new_slug

ROWS = 10_000
OBJECTS = 40


async def _make_tenant(pg: str, store: ObjectStore, slug: str) -> dict[str, bytes]:
    schema = schema_of(slug)
    conn = await asyncpg.connect(pg)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f'CREATE TABLE "{schema}".deals (id int PRIMARY KEY, name text NOT NULL)'
        )
        await conn.execute(
            f"INSERT INTO \"{schema}\".deals SELECT g, 'deal ' || g FROM generate_series(1, {ROWS}) g"
        )
    finally:
        await conn.close()
    bucket = "tenant-" + slug
    await store.create_bucket(bucket)
    files = {f"docs/{i:03}.bin": os.urandom(100 + i * 37) for i in range(OBJECTS)}
    for key, data in files.items():
        upload = await store.begin_upload(bucket, key, "application/octet-stream")
        await upload.write(data)
        await upload.commit()
    return files


async def _check(pg: str, store: ObjectStore, slug: str, files: dict[str, bytes]) -> None:
    conn = await asyncpg.connect(pg)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema_of(slug)}".deals') == ROWS
        assert (
            await conn.fetchval(f'SELECT name FROM "{schema_of(slug)}".deals WHERE id = 777')
            == "deal 777"
        )
    finally:
        await conn.close()
    for key, data in files.items():
        _, chunks = await store.get("tenant-" + slug, key)
        assert b"".join([c async for c in chunks]) == data


async def _drop(pg: str, store: ObjectStore, slug: str) -> None:
    conn = await asyncpg.connect(pg)
    try:
        await conn.execute(f'DROP SCHEMA "{schema_of(slug)}" CASCADE')
    finally:
        await conn.close()
    await store.delete_bucket("tenant-" + slug)


async def test_back_up_delete_restore_and_restore_elsewhere(
    database_url: str,
    pg_url: str,
    local_store: LocalStore,
    s3_store: S3Store,
    tmp_path: Path,
    db: Database,
) -> None:
    slug = new_slug()
    files = await _make_tenant(database_url, local_store, slug)
    archive = tmp_path / "tenant.tar"
    seen: list[tuple[int, int | None]] = []
    summary = await backup_tenant(
        database_url, local_store, slug, archive, lambda d, t: seen.append((d, t))
    )
    assert summary.objects == OBJECTS
    assert seen[-1] == (OBJECTS, OBJECTS)  # what the progress bar shows
    with tarfile.open(archive) as tar:
        assert {"manifest.json", "schema.sql", "objects.json"} <= set(tar.getnames())

    # The tenant is deleted, then restored in place.
    await _drop(database_url, local_store, slug)
    assert not await local_store.bucket_exists("tenant-" + slug)
    seen.clear()
    restored = await restore_tenant(
        database_url, local_store, archive, db=db, progress=lambda d, t: seen.append((d, t))
    )
    assert restored.objects == OBJECTS
    assert seen == [(n, OBJECTS) for n in range(1, OBJECTS + 1)]
    await _check(database_url, local_store, slug, files)

    # Restoring over an existing tenant is refused and changes nothing.
    with pytest.raises(ConflictError):
        await restore_tenant(database_url, local_store, archive)
    await _check(database_url, local_store, slug, files)

    # Another deployment: another database and S3 instead of the local folder, another slug.
    other_db = await create_database(pg_url, "plexica_restore_" + slug)
    other_slug = new_slug()
    restored = await restore_tenant(other_db, s3_store, archive, as_slug=other_slug)
    assert restored.slug == other_slug
    await _check(other_db, s3_store, other_slug, files)


async def test_a_failed_restore_leaves_nothing(
    database_url: str, local_store: LocalStore, tmp_path: Path
) -> None:
    slug = new_slug()
    await _make_tenant(database_url, local_store, slug)
    archive = tmp_path / "tenant.tar"
    await backup_tenant(database_url, local_store, slug, archive)
    # A corrupt archive: the schema loads, then an object key is one no bucket may hold.
    broken = tmp_path / "broken.tar"
    with tarfile.open(archive) as src, tarfile.open(broken, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo("objects/../escape.bin")
        info.size = 0
        dst.addfile(info, None)
    await _drop(database_url, local_store, slug)
    target = new_slug()
    with pytest.raises(Exception, match="key"):
        await restore_tenant(database_url, local_store, broken, as_slug=target)
    conn = await asyncpg.connect(database_url)
    try:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema_of(target)
            )
            == 0
        )
    finally:
        await conn.close()
    assert not await local_store.bucket_exists("tenant-" + target)


async def test_cli_backup_and_restore(
    database_url: str, s3: dict[str, Any], tmp_path: Path, settings: Settings
) -> None:
    store = S3Store(s3["endpoint"], s3["access_key"], s3["secret_key"])
    await store.start()
    try:
        slug = new_slug()
        files = await _make_tenant(database_url, store, slug)
        env = {
            "PLEXICA_DATABASE_URL": str(settings.database_url),
            "PLEXICA_STORAGE_ENDPOINT": s3["endpoint"],
            "PLEXICA_STORAGE_ACCESS_KEY": s3["access_key"],
            "PLEXICA_STORAGE_SECRET_KEY": s3["secret_key"],
        }
        runner = CliRunner()
        archive = tmp_path / "cli.tar"
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            ["backup", "tenant", slug, "--out", str(archive), "--schema-only"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert f"{OBJECTS} objects" in result.output
        await _drop(database_url, store, slug)
        result = await asyncio.to_thread(
            runner.invoke, app, ["restore", "tenant", str(archive), "--schema-only"], env=env
        )
        assert result.exit_code == 0, result.output
        await _check(database_url, store, slug, files)
        result = await asyncio.to_thread(
            runner.invoke, app, ["restore", "tenant", str(archive), "--schema-only"], env=env
        )
        assert result.exit_code != 0
        assert "conflict" in result.output
    finally:
        await store.close()
