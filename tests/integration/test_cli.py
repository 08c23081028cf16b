"""``plexica up`` and ``plexica serve`` as a user runs them: real processes, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plexica.kit.ports import free_port
from tests.harness import servers

PLEXICA = [sys.executable, "-m", "plexica.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    # Kept: the realms' keys in the tests' databases are sealed with the tests' key (ADR 0150).
    kept = ("PLEXICA_KEY_ENCRYPTION_KEY",)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_") or k in kept}
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PLEXICA, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_ready(port: int, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    # First start initialises PostgreSQL and publishes the shipped plugins: minutes on a busy CPU.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"exited {proc.returncode}:\n{out}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("not ready in time")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under the harness's session directory, which the server's user can always traverse.
    d = servers.session_dir() / f"up-{uuid.uuid4().hex[:8]}"
    yield d
    # A failed test must not leave a server behind.
    pid_file = d / "pg" / "postmaster.pid"
    if pid_file.exists():
        from plexica.kit.pgserver import EmbeddedPostgres

        EmbeddedPostgres(d).stop()


def test_up_serves_everything_and_stops_cleanly(data_dir: Path) -> None:
    port = free_port()
    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    try:
        wait_ready(port, proc)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert httpx.get(f"{base}/ready").json()["checks"] == {"database": "ok"}
        assert "plexica_http_requests_total" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/api/core/v1/info").json()["name"] == "plexica"
        spec = httpx.get(f"{base}/api/core/openapi.json", timeout=60).json()
        assert "/v1/info" in spec["paths"]
        assert httpx.get(f"{base}/api/core/docs").status_code == 200
        home = httpx.get(f"{base}/", follow_redirects=True)
        assert home.status_code == 200
        assert "Sign in" in home.text  # the web shell's login page
        # The edge asks for a token before it says whether a plugin exists (ADR 0080).
        missing = httpx.get(f"{base}/api/plugins/nothing/here")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthenticated"
        assert httpx.get(f"{base}/api/nothing").status_code == 404

        # A second instance on the same data directory is refused and corrupts nothing.
        second = subprocess.run(
            [*PLEXICA, "up", "--port", str(free_port()), "--data-dir", str(data_dir)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another Plexica instance" in second.stderr
        assert httpx.get(f"{base}/ready").status_code == 200
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert f"URL:       http://127.0.0.1:{port}/" in out
    assert str(data_dir.resolve()) in out
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "PostgreSQL left running"


def test_up_reuses_data_and_reset_starts_from_nothing(data_dir: Path) -> None:
    port = free_port()
    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    wait_ready(port, proc)
    stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
    marker = data_dir / "pg" / "PG_VERSION"
    first_init = marker.stat().st_mtime_ns

    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env())
    wait_ready(port, proc)
    stop(proc)
    assert marker.stat().st_mtime_ns == first_init, "second start re-initialised the data"

    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir), "--reset"], clean_env())
    wait_ready(port, proc)
    out = stop(proc)
    assert "reset: removed all data" in out
    assert marker.stat().st_mtime_ns != first_init


def test_up_refuses_a_port_in_use(data_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [*PLEXICA, "up", "--port", str(port), "--data-dir", str(data_dir)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("PLEXICA_DATABASE_URL", "nonsense", "invalid setting PLEXICA_DATABASE_URL"),
        ("PLEXICA_REDIS_ULR", "redis://x", "unknown setting PLEXICA_REDIS_ULR"),
    ],
)
def test_bad_settings_stop_start_up_with_one_line(var: str, value: str, expected: str) -> None:
    r = subprocess.run(
        [*PLEXICA, "serve", "core"], env=clean_env(**{var: value}), capture_output=True, text=True
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert expected in lines[0]


def test_serve_core_drains_and_logs_json(database_url: str) -> None:
    port = free_port()
    env = clean_env(PLEXICA_DATABASE_URL=database_url, PLEXICA_PORT=str(port))
    proc = start(["serve", "core"], env)
    try:
        wait_ready(port, proc)
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/info", headers={"X-Trace-ID": "trace-from-edge-1"}
        )
        assert r.status_code == 200
    finally:
        out = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out
    import json

    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request" and r.get("route") == "/v1/info"]
    assert access, out
    assert access[0]["trace_id"] == "trace-from-edge-1"
    assert access[0]["service"] == "core"
    assert all(database_url.split("@", maxsplit=1)[0] not in line for line in out.splitlines())


def test_serve_web_and_worker_answer_health(database_url: str) -> None:
    for kind in ("web", "worker"):
        port = free_port()
        env = clean_env(PLEXICA_DATABASE_URL=database_url, PLEXICA_PORT=str(port))
        proc = start(["serve", kind], env)
        try:
            wait_ready(port, proc)
            assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        finally:
            stop(proc, signal.SIGTERM)
        assert proc.returncode == 0


def test_serve_unknown_plugin_is_a_clear_error() -> None:
    r = subprocess.run(
        [*PLEXICA, "serve", "plugin", "nope"], env=clean_env(), capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "no plugin named 'nope'" in r.stderr
