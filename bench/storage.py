"""Upload and download throughput of one large file: through the core's API vs direct to S3.

.venv/bin/python -m bench.storage [--size-mb 100]

Starts PostgreSQL and SeaweedFS with the test harness; serves the core with uvicorn on loopback
(S3 mode, then local-folder mode) and streams the file with httpx in 1 MiB chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from bench._servers import harness, migrated_database
from plexica.app import create_app
from plexica.kit.ports import free_port
from plexica.settings import Settings
from plexica.storage.s3 import S3Store
from tests.harness import servers
from tests.support.tokens import StaticIssuers

CHUNK = 1024 * 1024


def _chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), CHUNK):
        yield bytes(view[i : i + CHUNK])


def through_api(settings: Settings, data: bytes) -> tuple[float, float]:
    issuers = StaticIssuers()
    tenant_id, slug = uuid.uuid4(), "bench" + uuid.uuid4().hex[:6]
    issuers.add_tenant(tenant_id, slug)
    headers = {
        "Authorization": f"Bearer {issuers.token(f'plexica-{slug}', roles=['member'], ttl=3600)}"
    }
    app = create_app(settings, verifier=issuers.verifier())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        while not server.started:
            time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=300) as http:
            start = time.perf_counter()
            r = http.put("/v1/files/objects/bench/big.bin", content=_chunks(data), headers=headers)
            up = time.perf_counter() - start
            assert r.status_code == 201, r.text
            start = time.perf_counter()
            size = 0
            with http.stream("GET", "/v1/files/objects/bench/big.bin", headers=headers) as resp:
                for chunk in resp.iter_bytes(CHUNK):
                    size += len(chunk)
            down = time.perf_counter() - start
            assert size == len(data)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return up, down


async def direct_s3(s3: dict[str, str], data: bytes) -> tuple[float, float]:
    store = S3Store(s3["endpoint"], s3["access_key"], s3["secret_key"])
    await store.start()
    try:
        bucket = "bench-" + uuid.uuid4().hex[:8]
        await store.create_bucket(bucket)
        start = time.perf_counter()
        upload = await store.begin_upload(bucket, "big.bin", "application/octet-stream")
        for chunk in _chunks(data):
            await upload.write(chunk)
        await upload.commit()
        up = time.perf_counter() - start
        start = time.perf_counter()
        _, chunks = await store.get(bucket, "big.bin")
        size = 0
        async for chunk in chunks:
            size += len(chunk)
        down = time.perf_counter() - start
        assert size == len(data)
        await store.delete_bucket(bucket)
    finally:
        await store.close()
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    data = os.urandom(args.size_mb * CHUNK)
    mb = float(args.size_mb)
    with harness():
        url = asyncio.run(migrated_database())
        s3 = servers.ensure("s3")
        base = Settings(
            database_url=url, log_level="WARNING", data_dir=Path(servers.session_dir()) / "data"
        )
        s3_settings = Settings(
            **(
                base.model_dump()
                | {
                    "storage_endpoint": s3["endpoint"],
                    "storage_access_key": s3["access_key"],
                    "storage_secret_key": s3["secret_key"],
                }
            )
        )
        rows = {
            "direct to S3 (aiobotocore, 8 MiB parts)": asyncio.run(direct_s3(s3, data)),
            "core API -> S3 (streamed, multipart)": through_api(s3_settings, data),
            "core API -> local folder": through_api(base, data),
        }
    print(f"{args.size_mb} MiB file, loopback, SeaweedFS 4.48 (weed mini); MiB/s")
    print(f"{'path':<42} {'upload':>8} {'download':>9}")
    for name, (up, down) in rows.items():
        print(f"{name:<42} {mb / up:>8.1f} {mb / down:>9.1f}")


if __name__ == "__main__":
    main()
