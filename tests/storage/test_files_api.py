"""/v1/files end to end, in both modes: S3 (SeaweedFS) and the local folder, on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica.storage.service import Scope
from tests.conftest import error_of, running
from tests.integration.test_core_service import health_of
from tests.storage.conftest import Core, storage_settings

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 1000

TRAVERSAL = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2Ftenant-other%2Fa.txt",
    "a%2F..%2F..%2Fb",
    "%2Fetc%2Fpasswd",
    "a%5C..%5Cb",
    "a%00b",
    "a%0Ab",
    "a%2F.%2Fb",
]


async def test_upload_download_list_delete(core: Core) -> None:
    a = core.tenant()
    c = core.client
    r = await c.put(
        "/v1/files/objects/docs/logo.png",
        content=PNG,
        headers=a.headers | {"Content-Type": "image/png"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["content_type"] == "image/png"
    assert r.json()["size"] == len(PNG)

    r = await c.get("/v1/files/objects/docs/logo.png", headers=a.headers)
    assert r.status_code == 200
    assert r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("attachment")

    for i in range(5):
        r = await c.put(
            f"/v1/files/objects/notes/{i}.txt", content=f"note {i}".encode(), headers=a.headers
        )
        assert r.status_code == 201, r.text
    r = await c.get("/v1/files", params={"prefix": "notes/", "limit": 2}, headers=a.headers)
    page = r.json()
    assert [i["key"] for i in page["items"]] == ["notes/0.txt", "notes/1.txt"]
    keys: list[str] = []
    cursor = page["next_cursor"]
    while cursor:
        page = (
            await c.get(
                "/v1/files",
                params={"prefix": "notes/", "limit": 2, "cursor": cursor},
                headers=a.headers,
            )
        ).json()
        keys += [i["key"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert keys == ["notes/2.txt", "notes/3.txt", "notes/4.txt"]

    usage = (await c.get("/v1/files/usage", headers=a.headers)).json()
    assert usage["objects"] == 6
    assert usage["bytes_used"] == len(PNG) + 5 * len(b"note 0")

    assert (await c.delete("/v1/files/objects/notes/0.txt", headers=a.headers)).status_code == 204
    r = await c.delete("/v1/files/objects/notes/0.txt", headers=a.headers)
    assert r.status_code == 404
    usage = (await c.get("/v1/files/usage", headers=a.headers)).json()
    assert usage["objects"] == 5


async def test_tenant_b_cannot_reach_tenant_a_by_any_key(core: Core) -> None:
    a, b = core.tenant(), core.tenant()
    c = core.client
    r = await c.put(
        "/v1/files/objects/private/report.txt", content=b"A's secret", headers=a.headers
    )
    assert r.status_code == 201
    assert (
        await c.get("/v1/files/objects/private/report.txt", headers=b.headers)
    ).status_code == 404
    assert (await c.get("/v1/files", headers=b.headers)).json()["items"] == []
    for key in [
        f"..%2F{a.bucket}%2Fprivate%2Freport.txt",
        f"..%2F..%2F{a.bucket}%2Fprivate%2Freport.txt",
        f"%2F{a.bucket}%2Fprivate%2Freport.txt",
        f"{a.bucket}%2Fprivate%2Freport.txt",
        "private%2F..%2F..%2F" + a.bucket + "%2Fprivate%2Freport.txt",
    ]:
        r = await c.get("/v1/files/objects/" + key, headers=b.headers)
        assert r.status_code in (400, 404), (key, r.status_code)
        assert b"A's secret" not in r.content
    r = await c.get("/v1/files", params={"prefix": "../" + a.bucket}, headers=b.headers)
    assert error_of(r)["code"] == "invalid_key"
    # Without a token, nothing; a client-supplied tenant header changes nothing.
    assert (await c.get("/v1/files/objects/private/report.txt")).status_code == 401
    r = await c.get(
        "/v1/files/objects/private/report.txt", headers=b.headers | {"X-Tenant-ID": str(a.id)}
    )
    assert r.status_code == 404


async def test_traversal_keys_are_refused_and_nothing_written(core: Core) -> None:
    a = core.tenant()
    c = core.client
    for key in TRAVERSAL:
        r = await c.put("/v1/files/objects/" + key, content=b"x", headers=a.headers)
        assert r.status_code == 400, (key, r.text)
        # A NUL is refused before any route by the input guard (ADR 0135).
        assert error_of(r)["code"] in {"invalid_key", "invalid_character"}
        r = await c.get("/v1/files/objects/" + key, headers=a.headers)
        assert r.status_code == 400, key
    assert (await c.get("/v1/files", headers=a.headers)).json()["items"] == []
    if core.mode == "local":
        leaked = [
            p
            for p in core.settings.data_dir.rglob("*")
            if p.is_file() and p.name in ("passwd", "b")
        ]
        assert leaked == []


async def _set_limits(core: Core, slug: str, quota: int | None, max_object: int | None) -> None:
    r = await core.client.put(
        f"/v1/files/limits/{slug}",
        json={"quota_bytes": quota, "max_object_bytes": max_object},
        headers=core.issuers.operator_headers(),
    )
    assert r.status_code == 200, r.text


async def test_oversize_and_over_quota_write_nothing(core: Core) -> None:
    a = core.tenant()
    c = core.client
    await _set_limits(core, a.slug, 10_000, 4_000)

    async def body(n: int, chunk: int = 1000):  # type: ignore[no-untyped-def]
        for _ in range(n // chunk):
            yield b"y" * chunk

    # Content-Length known: refused up front; streamed without a length: refused mid-way.
    r = await c.put("/v1/files/objects/big.txt", content=b"z" * 5000, headers=a.headers)
    assert r.status_code == 413
    assert error_of(r)["code"] == "object_too_large"
    r = await c.put("/v1/files/objects/big.txt", content=body(5000), headers=a.headers)
    assert r.status_code == 413
    assert error_of(r)["code"] == "object_too_large"

    for i in range(3):
        r = await c.put(f"/v1/files/objects/part{i}.txt", content=b"q" * 3000, headers=a.headers)
        assert r.status_code == 201
    r = await c.put("/v1/files/objects/part3.txt", content=b"q" * 3000, headers=a.headers)
    assert r.status_code == 413
    assert error_of(r)["code"] == "quota_exceeded"
    r = await c.put("/v1/files/objects/part3.txt", content=body(3000), headers=a.headers)
    assert error_of(r)["code"] == "quota_exceeded"
    # Overwriting within the quota is fine: the old object's bytes are given back.
    r = await c.put("/v1/files/objects/part0.txt", content=b"r" * 3900, headers=a.headers)
    assert r.status_code == 201, r.text

    listed = [i["key"] for i in (await c.get("/v1/files", headers=a.headers)).json()["items"]]
    assert listed == ["part0.txt", "part1.txt", "part2.txt"]
    metrics = (await c.get("/metrics")).text
    assert 'plexica_storage_refused_uploads_total{code="quota_exceeded"}' in metrics
    usage = (await c.get("/v1/files/usage", headers=a.headers)).json()
    assert usage["bytes_used"] == 3900 + 6000
    assert usage["objects"] == 3


async def test_concurrent_uploads_cannot_exceed_the_quota(core: Core) -> None:
    a = core.tenant()
    await _set_limits(core, a.slug, 5_000, None)
    results = await asyncio.gather(
        *(
            core.client.put(f"/v1/files/objects/c{i}.txt", content=b"c" * 2000, headers=a.headers)
            for i in range(6)
        )
    )
    assert sorted(r.status_code for r in results).count(201) == 2
    usage = (await core.client.get("/v1/files/usage", headers=a.headers)).json()
    assert usage["bytes_used"] == 4000
    assert len((await core.client.get("/v1/files", headers=a.headers)).json()["items"]) == 2


async def test_wrong_content_type_is_refused(core: Core) -> None:
    a = core.tenant()
    c = core.client
    cases = [
        (ELF, None),
        (b"%PDF-1.7\n" + b"x" * 600, "image/png"),
        (b"<html><script>alert(1)</script></html>", "text/plain"),
    ]
    for data, declared in cases:
        headers = a.headers | ({"Content-Type": declared} if declared else {})
        r = await c.put("/v1/files/objects/bad.bin", content=data, headers=headers)
        assert r.status_code == 415, r.text
    assert (await c.get("/v1/files", headers=a.headers)).json()["items"] == []


async def test_presigned_get_works_then_expires(core: Core) -> None:
    a = core.tenant()
    c = core.client
    await c.put("/v1/files/objects/share/a.txt", content=b"shared text", headers=a.headers)
    r = await c.post(
        "/v1/files/presign", json={"key": "share/a.txt", "expires_in": 2}, headers=a.headers
    )
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    fetch = _fetcher(core)
    first = await fetch("GET", url)
    assert first.content == b"shared text", first.text
    await asyncio.sleep(3.1)
    assert (await fetch("GET", url)).status_code in (401, 403)
    # A tampered signature is refused too.
    r = await c.post("/v1/files/presign", json={"key": "share/a.txt"}, headers=a.headers)
    tampered = (
        r.json()["url"].replace("a.txt", "b.txt")
        if core.mode == "s3"
        else r.json()["url"][:-3] + "AAA"
    )
    assert (await fetch("GET", tampered)).status_code in (403, 404)
    r = await c.post("/v1/files/presign", json={"key": "missing.txt"}, headers=a.headers)
    assert r.status_code == 404
    r = await c.post("/v1/files/presign", json={"key": "../x", "method": "GET"}, headers=a.headers)
    assert error_of(r)["code"] == "invalid_key"


async def test_presigned_put_pins_length_and_type(core: Core) -> None:
    a = core.tenant()
    c = core.client
    r = await c.post(
        "/v1/files/presign",
        json={"key": "up/logo.png", "method": "PUT", "content_type": "image/png", "size": len(PNG)},
        headers=a.headers,
    )
    assert r.status_code == 200, r.text
    grant = r.json()
    fetch = _fetcher(core)
    r = await fetch("PUT", grant["url"], content=PNG, headers=grant["headers"])
    assert r.status_code in (200, 201), r.text
    r = await c.get("/v1/files/objects/up/logo.png", headers=a.headers)
    assert r.content == PNG
    # Another length than signed is refused.
    r = await fetch(
        "PUT", grant["url"], content=PNG + b"more", headers={"Content-Type": "image/png"}
    )
    assert r.status_code in (400, 403)
    r = await c.post(
        "/v1/files/presign",
        json={
            "key": "up/x.exe",
            "method": "PUT",
            "content_type": "application/x-msdownload",
            "size": 10,
        },
        headers=a.headers,
    )
    assert r.status_code == 415


async def test_operators_have_no_bucket(core: Core) -> None:
    r = await core.client.get("/v1/files", headers=core.issuers.operator_headers())
    assert r.status_code == 403
    r = await core.client.put(
        "/v1/files/limits/Bad..Slug",
        json={"quota_bytes": 1},
        headers=core.issuers.operator_headers(),
    )
    # The path parameter's pattern is the slug rule (ADR 0136): refused as invalid input.
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "validation_error"
    a = core.tenant()
    r = await core.client.put(
        f"/v1/files/limits/{a.slug}", json={"quota_bytes": 1}, headers=a.headers
    )
    assert r.status_code == 403


def _fetcher(core: Core):  # type: ignore[no-untyped-def]
    """Presigned URLs go to S3 directly, or to the core for the local store."""

    async def fetch(method: str, url: str, **kwargs: object) -> httpx.Response:
        if core.mode == "s3":
            async with httpx.AsyncClient() as http:
                return await http.request(method, url, **kwargs)  # type: ignore[arg-type]
        parts = urllib.parse.urlsplit(url)
        path = parts.path.removeprefix("/api/core")  # the core itself, not behind the edge
        return await core.client.request(method, path + "?" + parts.query, **kwargs)  # type: ignore[arg-type]

    return fetch


def test_scope_is_the_tenant_bucket() -> None:
    assert Scope.of_tenant(None, "acme").bucket == "tenant-acme"


async def test_health_names_the_object_store_and_ready_does_not_need_it(
    settings: Settings, db: Database, s3: dict[str, Any], tmp_path: Path
) -> None:
    good = storage_settings("s3", settings, s3, tmp_path)
    async for client in running(create_app(good, db=db)):
        assert await health_of(client, "storage") == "ok"
    bad = Settings(**(good.model_dump() | {"storage_secret_key": "wrong-secret"}))
    async for client in running(create_app(bad, db=db)):
        assert await health_of(client, "storage") != "ok"
        assert (await client.get("/ready")).status_code == 200
