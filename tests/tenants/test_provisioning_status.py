"""Asynchronous tenant creation (``Prefer: respond-async``) and the provisioning status route,
on the real core with real PostgreSQL: the steps advance while the client polls, a failure names
its step and the compensation, and the status route is for operators only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.kit.state import started, state_of
from plexica.settings import Settings
from tests.conftest import error_of, running
from tests.support.tokens import StaticIssuers
from tests.tenants.conftest import new_slug, schema_exists

ASYNC = {"Prefer": "respond-async"}


@dataclass
class GateStep:
    """A real last step that holds each saga until the test opens the gate; it fails for
    tenants whose slug starts with ``fail``."""

    name: str = "gate"
    opened: asyncio.Event | None = None

    async def apply(self, tenant: TenantRef) -> None:
        assert self.opened is not None
        await asyncio.wait_for(self.opened.wait(), 10)
        if tenant.slug.startswith("fail"):
            raise RuntimeError("the gate refused this tenant")

    async def undo(self, tenant: TenantRef) -> None:
        return None

    async def purge(self, tenant: TenantRef) -> None:
        return None


@pytest.fixture
async def gated(
    settings: Settings, db: Database, issuers: StaticIssuers
) -> AsyncIterator[tuple[httpx.AsyncClient, GateStep]]:
    app: FastAPI = create_app(settings, db=db, verifier=issuers.verifier())
    gate = GateStep()
    async for client in running(app):
        gate.opened = asyncio.Event()
        started(state_of(app).services, "services").tenants.steps.append(gate)
        yield client, gate
        gate.opened.set()


async def start(api: httpx.AsyncClient, issuers: StaticIssuers, slug: str) -> httpx.Response:
    return await api.post(
        "/v1/tenants",
        json={"slug": slug, "name": "Async Co", "admin_email": f"it@{slug}.example"},
        headers={**issuers.operator_headers(), **ASYNC},
    )


async def until_finished(
    api: httpx.AsyncClient, issuers: StaticIssuers, url: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await api.get(url, headers=issuers.operator_headers())).json()
        if body["finished"]:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("provisioning did not finish")


async def test_steps_advance_while_the_client_polls(
    gated: tuple[httpx.AsyncClient, GateStep], issuers: StaticIssuers
) -> None:
    api, gate = gated
    slug = new_slug("as")
    made = await start(api, issuers, slug)
    assert made.status_code == 202, made.text
    assert made.headers["Preference-Applied"] == "respond-async"
    assert made.json()["state"] == "provisioning"
    url = str(httpx.URL("http://testserver/v1/tenants").join(made.headers["location"]))
    assert url.endswith(f"/v1/tenants/{made.json()['id']}/provisioning")

    op = issuers.operator_headers()
    deadline = time.monotonic() + 10
    while True:
        status = (await api.get(url, headers=op)).json()
        if status["current"] == "gate":
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.02)
    assert status["finished"] is False
    assert status["state"] == "provisioning"
    assert [s["name"] for s in status["steps"]] == [
        "schema",
        "identity_realm",
        "bucket",
        "admin_invite",
        "gate",
    ]
    assert [s["status"] for s in status["steps"]] == ["done"] * 4 + ["running"]
    assert (status["done"], status["total"]) == (4, 5)
    # The slug is the tenant's key too, and a second create of it is refused while it runs.
    assert (await api.get(f"/v1/tenants/{slug}/provisioning", headers=op)).json()["slug"] == slug
    again = await start(api, issuers, slug)
    assert again.status_code == 409
    assert error_of(again)["code"] == "tenant_exists"

    assert gate.opened is not None
    gate.opened.set()
    final = await until_finished(api, issuers, url)
    assert final["state"] == "active"
    assert final["current"] is None
    assert final["failed_step"] is None
    assert [s["status"] for s in final["steps"]] == ["done"] * 5


async def test_a_failed_step_is_named_with_its_error_and_the_compensation(
    gated: tuple[httpx.AsyncClient, GateStep], issuers: StaticIssuers, db: Database
) -> None:
    api, gate = gated
    assert gate.opened is not None
    gate.opened.set()
    slug = new_slug("fail")
    made = await start(api, issuers, slug)
    assert made.status_code == 202, made.text
    final = await until_finished(api, issuers, f"/v1/tenants/{slug}/provisioning")
    assert final["state"] == "failed"
    assert final["failed_step"] == "gate"
    assert "the gate refused this tenant" in final["failure_reason"]
    by_name = {s["name"]: s for s in final["steps"]}
    assert "the gate refused this tenant" in by_name["gate"]["error"]
    assert [s["status"] for s in final["steps"]] == ["undone"] * 5
    assert not await schema_exists(db, f"tenant_{slug.replace('-', '_')}")

    # A retry in the background too; the gate still refuses, so it fails the same way again.
    again = await api.post(
        f"/v1/tenants/{slug}/retry", headers={**issuers.operator_headers(), **ASYNC}
    )
    assert again.status_code == 202, again.text
    assert again.json()["state"] == "provisioning"
    assert again.headers["location"] == "provisioning"
    final = await until_finished(api, issuers, f"/v1/tenants/{slug}/provisioning")
    assert final["state"] == "failed"
    assert final["failed_step"] == "gate"
    refused = await api.post(
        f"/v1/tenants/{new_slug()}/retry", headers={**issuers.operator_headers(), **ASYNC}
    )
    assert refused.status_code == 404


async def test_bad_input_is_refused_before_anything_runs_and_only_operators_read_status(
    gated: tuple[httpx.AsyncClient, GateStep], issuers: StaticIssuers
) -> None:
    api, _ = gated
    bad = await start(api, issuers, "Not A Slug")
    assert bad.status_code == 422
    assert error_of(bad)["code"] == "invalid_slug"
    missing = await api.get(
        "/v1/tenants/nosuchtenant/provisioning", headers=issuers.operator_headers()
    )
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "tenant_not_found"
    assert (await api.get("/v1/tenants/nosuchtenant/provisioning")).status_code == 401
