"""Backup and restore time of one tenant with 10,000 rows and 1,000 objects.

.venv/bin/python -m bench.backup [--rows 10000] [--objects 1000] [--store s3|local]

Starts PostgreSQL (and SeaweedFS for --store s3) with the test harness.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import asyncpg

from bench._servers import harness, migrated_database
from plexica.backup.service import backup_tenant, restore_tenant
from plexica.kit.provisioning import schema_of
from plexica.storage.local import LocalStore
from plexica.storage.s3 import S3Store
from plexica.storage.store import ObjectStore
from tests.harness import servers


async def run(rows: int, objects: int, kind: str) -> None:
    url = await migrated_database()
    work = Path(tempfile.mkdtemp(prefix="plexica-bench-backup-"))
    store: ObjectStore
    if kind == "s3":
        s3 = servers.ensure("s3")
        store = S3Store(s3["endpoint"], s3["access_key"], s3["secret_key"])
    else:
        store = LocalStore(work / "storage")
    await store.start()
    slug = "bench"
    schema, bucket = schema_of(slug), "tenant-" + slug
    conn = await asyncpg.connect(url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        f'CREATE TABLE "{schema}".deals (id int PRIMARY KEY, name text, amount numeric)'
    )
    await conn.execute(
        f"INSERT INTO \"{schema}\".deals SELECT g, 'deal ' || g, g * 1.5 FROM generate_series(1, {rows}) g"
    )
    await store.create_bucket(bucket)
    start = time.perf_counter()
    for i in range(objects):
        upload = await store.begin_upload(bucket, f"files/{i:05}.bin", "application/octet-stream")
        await upload.write(os.urandom(4096))
        await upload.commit()
    seeded = time.perf_counter() - start
    archive = work / "bench.tar"
    backup = await backup_tenant(url, store, slug, archive)
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await store.delete_bucket(bucket)
    restore = await restore_tenant(url, store, archive)
    assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".deals') == rows
    await conn.close()
    await store.close()
    size = archive.stat().st_size / 1024 / 1024
    print(f"tenant with {rows} rows and {objects} objects of 4 KiB, store={kind}")
    print(f"  seeding the objects     {seeded:6.1f} s")
    print(f"  backup  (archive {size:.1f} MiB) {backup.seconds:6.1f} s")
    print(f"  restore                 {restore.seconds:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=1_000)
    parser.add_argument("--store", choices=["s3", "local"], default="s3")
    args = parser.parse_args()
    with harness():
        asyncio.run(run(args.rows, args.objects, args.store))


if __name__ == "__main__":
    main()
