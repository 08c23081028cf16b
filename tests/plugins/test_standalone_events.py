"""Billing as its own process (``plexica serve plugin billing``) with its own database login and
nothing of the platform's: it consumes ``crm.deal.won`` from Kafka and invoices the deal
(ADR 0078)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from plexica.app import create_app
from plexica.events import service as events_service
from plexica.events.runtime import EventRuntime
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica_billing.app import plugin_root as billing_root
from plexica_sdk.manifest import Manifest
from tests.conftest import running
from tests.harness import servers
from tests.plugins.conftest import TenantFactory, register_dir
from tests.support.tokens import StaticIssuers


@pytest.fixture(scope="module")
def kafka() -> str:
    return str(servers.ensure("kafka")["bootstrap"])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "plugin not ready"
        time.sleep(0.1)


@pytest.fixture(scope="module")
async def billing_manifest(db: Database) -> Manifest:
    return await register_dir(db, billing_root())


@pytest.fixture(scope="module")
def billing_process(
    database_url: str,
    jwks_base: str,
    kafka: str,
    billing_manifest: Manifest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    # The operator's step: the plugin's own login (ADR 0076), its only database access.
    out = subprocess.run(
        [sys.executable, "-m", "plexica.cli", "plugin", "credentials", "billing", "--json"],
        env={**env, "PLEXICA_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    port = free_port()
    env.update(
        PLEXICA_PLUGIN_DATABASE_URL=json.loads(out.stdout)["database_url"],
        PLEXICA_KAFKA_BROKERS=kafka,
        PLEXICA_PORT=str(port),
        PLEXICA_LOG_FORMAT="json",
        PLEXICA_PLUGIN_ISSUER_BASE_URL=jwks_base,
    )
    log = tmp_path_factory.mktemp("billing") / "billing.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexica.cli", "serve", "plugin", "billing"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_billing_process_with_only_its_login_invoices_a_won_deal_from_kafka(
    billing_process: tuple[str, Path],
    kafka: str,
    settings: Settings,
    db: Database,
    issuers: StaticIssuers,
    make_tenant: TenantFactory,
) -> None:
    url, log = billing_process
    core = create_app(settings, db=db, verifier=issuers.verifier())
    state_of(core).plugin_endpoints = {"billing": url}  # readiness over real HTTP
    tenant = await make_tenant()
    async for http in running(core):
        r = await http.post(
            f"/v1/tenants/{tenant.id}/plugins",
            json={"plugin_id": "billing"},
            headers=tenant.headers("tenant_admin"),
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "active", r.text

    deal = uuid.uuid4()
    count = text(
        f'SELECT count(*) FROM "{tenant.ref.schema}".billing_invoices WHERE crm_deal_id = :d'
    )
    async with EventRuntime(db, {}, kafka_brokers=kafka):  # the worker's relay
        async with db.session() as s:
            await events_service.publish(
                s,
                "crm.deal.won",
                {
                    "deal_id": str(deal),
                    "title": "Umbrella pilot",
                    "amount": "4200.00",
                    "currency": "EUR",
                    "company_id": None,
                    "company_name": None,
                },
                tenant_id=tenant.id,
                source="/plugins/crm",
            )
        invoices = 0
        deadline = asyncio.get_running_loop().time() + 60
        while invoices == 0:
            async with db.session() as s:
                invoices = int((await s.execute(count, {"d": deal})).scalar_one())
            assert asyncio.get_running_loop().time() < deadline, log.read_text()[-4000:]
            await asyncio.sleep(0.1)
    assert invoices == 1
    lines = log.read_text()
    assert "plugin_process_has_platform_credentials" not in lines
    assert "events_task_failed" not in lines


def test_serve_plugin_keeps_the_platform_url_from_a_plugin_with_its_own_login(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from plexica.cli import services

    seen: dict[str, str] = {}

    def serve_workers(*_: object, **__: object) -> None:  # what the workers would inherit
        seen.update(os.environ)

    monkeypatch.setattr(services, "serve_workers", serve_workers)
    monkeypatch.delenv("PLEXICA_SERVICE", raising=False)
    monkeypatch.setenv("PLEXICA_DATABASE_URL", database_url)
    monkeypatch.setenv("PLEXICA_PLUGIN_DATABASE_URL", "postgresql://plx_billing_login:x@h/db")
    services.serve_service("plugin", "billing")
    assert seen["PLEXICA_PLUGIN_DATABASE_URL"].startswith("postgresql://plx_billing_login")
    assert "PLEXICA_DATABASE_URL" not in seen
    assert seen["PLEXICA_SERVICE"] == "plugin-billing"
