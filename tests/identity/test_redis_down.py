"""Sign-in while the shared login throttle's Redis is gone or hangs: a Redis of the test's own,
killed and SIGSTOPped by PID, behind a core served on a real port."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from plexica.app import create_app
from plexica.identity.client import LoginError, password_login
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.settings import Settings
from tests.harness.servers import RedisServer
from tests.identity.conftest import Live, provision, set_password


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()


@pytest.fixture
def live_on_redis(database_url: str, redis: RedisServer) -> Iterator[Live]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=database_url, public_url=url, port=port, redis_url=redis.url)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the core app did not start"
        assert thread.is_alive(), "the core app did not start"
        time.sleep(0.02)
    yield Live(url, settings)
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("fault", ["killed", "hanging"])
async def test_sign_in_works_and_is_throttled_locally_while_redis_is_down(
    live_on_redis: Live, db: Database, redis: RedisServer, fault: str
) -> None:
    tenant = await provision(db, live_on_redis)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    issuer = live_on_redis.issuer(tenant.realm)
    assert redis.proc is not None
    if fault == "killed":
        redis.stop()
    else:
        redis.proc.send_signal(signal.SIGSTOP)
    async with httpx.AsyncClient(timeout=30.0) as http:
        body = await password_login(http, issuer, tenant.admin_email, password)
        assert body["access_token"]
        # Failures are still counted (in this process) and still lock the account.
        messages = []
        for _ in range(6):
            try:
                await password_login(http, issuer, tenant.admin_email, "guess-guess-guess")
            except LoginError as exc:
                messages.append(str(exc))
        assert messages[:5] == ["Invalid email or password."] * 5
        assert messages[5].startswith("Too many failed attempts")
        metrics = (await http.get(live_on_redis.url + "/metrics")).text
    assert 'plexica_redis_fallback_total{component="login_throttle"}' in metrics


async def test_failures_before_redis_dies_still_count_after(
    live_on_redis: Live, db: Database, redis: RedisServer
) -> None:
    """Every failure is also kept in PostgreSQL (ADR 0243): Redis killed after three wrong
    passwords, the fourth and fifth lock the account as they would have with Redis up."""
    tenant = await provision(db, live_on_redis)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    issuer = live_on_redis.issuer(tenant.realm)
    messages = []
    async with httpx.AsyncClient(timeout=30.0) as http:
        for attempt in range(6):
            if attempt == 3:
                redis.stop()
            try:
                await password_login(http, issuer, tenant.admin_email, "guess-guess-guess")
            except LoginError as exc:
                messages.append(str(exc))
        with pytest.raises(LoginError, match="Too many failed attempts"):
            await password_login(http, issuer, tenant.admin_email, password)
    assert messages[:5] == ["Invalid email or password."] * 5
    assert messages[5].startswith("Too many failed attempts")
