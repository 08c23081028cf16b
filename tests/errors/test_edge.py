"""The embedded edge speaks the error shape (ADR 0137) and serves presigned URLs as returned
(ADR 0138)."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI

from plexica.gateway.embedded import create_edge_app
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica.web.app import create_web_app
from plexica_sdk.app import PluginConfig, create_plugin_app
from plexica_sdk.manifest import parse_manifest
from tests.conftest import error_of, running
from tests.errors.conftest import Stack
from tests.gateway.conftest import Core, core_app
from tests.plugins.conftest import plugin_doc, register_doc
from tests.support.tokens import StaticIssuers

CORE = "/api/core/v1"


def slow_plugin(plugin_id: str, timeout: float) -> FastAPI:
    doc = plugin_doc(plugin_id, api={"upstream_timeout_seconds": timeout})
    app = create_plugin_app(parse_manifest(doc), config=PluginConfig())
    never = asyncio.Event()

    @app.get("/v1/hang")
    async def hang() -> dict[str, str]:
        await never.wait()
        return {}

    @app.get("/v1/quick")
    async def quick() -> dict[str, str]:
        return {"ok": "yes"}

    return app


async def test_a_plugin_slower_than_its_timeout_is_504_json(
    settings: Settings, db: Database, issuers: StaticIssuers
) -> None:
    pid = "slow" + uuid.uuid4().hex[:8]
    await register_doc(db, plugin_doc(pid, api={"upstream_timeout_seconds": 0.2}), [])
    plugin = slow_plugin(pid, 0.2)
    core = core_app(settings, db, issuers, [])
    state_of(core).plugin_endpoints = {pid: plugin}
    edge = create_edge_app(core, create_web_app(settings), {pid: plugin})
    async for http in running(edge):
        api = Core(core, http, issuers, base="/api/core")
        t = await api.tenant()
        await api.install(t, pid)
        token = {"Authorization": f"Bearer {api.token(t, 'slow-user')}"}
        r = await http.get(f"/api/plugins/{pid}/v1/quick", headers=token)
        assert r.status_code == 200, r.text
        r = await http.get(f"/api/plugins/{pid}/v1/hang", headers=token)
        assert r.status_code == 504, r.text
        assert error_of(r)["code"] == "upstream_timeout"
        assert r.headers["x-request-id"]


async def test_a_plugin_served_elsewhere_that_is_down_is_502_and_a_large_body_413(
    settings: Settings, db: Database, issuers: StaticIssuers
) -> None:
    pid = "down" + uuid.uuid4().hex[:8]
    await register_doc(db, plugin_doc(pid), [])
    core = core_app(settings, db, issuers, [])
    state_of(core).plugin_endpoints = {pid: slow_plugin(pid, 30)}  # up while it is installed
    nobody = f"http://127.0.0.1:{free_port()}"  # then served by no one (the dev loop, stopped)
    edge = create_edge_app(core, create_web_app(settings), {}, remote=lambda _: nobody)
    async for http in running(edge):
        api = Core(core, http, issuers, base="/api/core")
        t = await api.tenant()
        await api.install(t, pid)
        token = {"Authorization": f"Bearer {api.token(t, 'down-user')}"}
        r = await http.get(f"/api/plugins/{pid}/v1/quick", headers=token)
        assert r.status_code == 502, r.text
        assert error_of(r)["code"] == "bad_gateway"
        assert r.headers["x-request-id"]
        pulled = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal pulled
            for _ in range(64):
                pulled += 1
                yield b" " * (1024 * 1024)

        big = token | {"content-length": str(64 * 1024 * 1024)}
        r = await http.post(f"/api/plugins/{pid}/v1/quick", content=chunks(), headers=big)
        assert r.status_code == 413, r.text
        assert error_of(r)["code"] == "payload_too_large"
        assert pulled <= 1  # refused on the declared length, before the body is read


async def test_unknown_routes_are_404_json(stack: Stack) -> None:
    for path in ("/api/nope", "/api/plugins/nope/v1/x", f"{CORE}/nope", "/api/plugins/crm/v9"):
        r = await stack.http.get(path, headers=stack.admin)
        assert r.status_code == 404, (path, r.text)
        assert error_of(r)["code"] == "not_found"
        assert r.headers["x-request-id"]


async def test_a_presigned_url_works_as_returned_without_a_bearer(
    stack: Stack, settings: Settings
) -> None:
    r = await stack.http.put(
        f"{CORE}/files/objects/share/a.txt", content=b"hi", headers=stack.admin
    )
    assert r.status_code == 201, r.text
    r = await stack.http.post(
        f"{CORE}/files/presign", json={"key": "share/a.txt"}, headers=stack.admin
    )
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert url.startswith(settings.public_base_url + "/api/core/v1/files/signed?token="), url
    parts = urllib.parse.urlsplit(url)
    r = await stack.http.get(f"{parts.path}?{parts.query}")  # no Authorization
    assert r.status_code == 200, r.text
    assert r.content == b"hi"
    tampered = f"{parts.path}?{parts.query[:-3]}AAA"
    r = await stack.http.get(tampered)
    assert r.status_code in (403, 404), r.text
    error_of(r)
    r = await stack.http.get(f"{parts.path}?token=nonsense")
    assert r.status_code in (400, 403), r.text
    error_of(r)
