"""Panic routing on the real Traefik (ADR 0227): when no server of a service passes its
``/ready`` (every core while PostgreSQL is down, a plugin whose replicas all fail it), the
request still goes to the servers and the client gets the service's own answer (503 +
Retry-After in the error shape), never Traefik's plain "no available server". While one server
is ready, only ready ones get requests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from plexica.gateway.config import CHECKED, DECISION_PATH, traefik_config
from plexica.kit.ports import free_port
from tests.gateway.test_traefik import TRAEFIK
from tests.support.wait import until

UNAVAILABLE: dict[str, object] = {
    "error": {"code": "unavailable", "message": "database down", "details": None}
}


@dataclass
class State:
    """One fake server: whether its /ready passes, what it answers, what it got."""

    name: str
    ready: bool = False
    decide: int = 200  # the decision's status (a core)
    serve: int = 503  # any other request's status
    seen: Counter[str] = field(default_factory=Counter)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        body: dict[str, object]
        if path == "/ready":
            status, body = (200, {}) if self.state.ready else (503, UNAVAILABLE)
        elif path == "/health":
            status, body = 200, {"status": "ok"}
        else:
            self.state.seen[path] += 1
            status = self.state.decide if path == DECISION_PATH else self.state.serve
            body = {"from": self.state.name}
            if status >= 400:
                body = {**UNAVAILABLE, "from": self.state.name}
        data = json.dumps(body).encode()
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *_: object) -> None:
        pass


def serve(state: State) -> ThreadingHTTPServer:
    handler = type("Fake", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Edge:
    url: str
    admin: str
    internal: str
    cores: list[State]
    crm: list[State]
    solo: State  # a plugin with one server (the Compose/Kubernetes shape)

    def status(self, service: str) -> dict[str, str]:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = httpx.get(f"{self.admin}/api/http/services/{service}{CHECKED}@file", timeout=2)
            return dict(r.json().get("serverStatus", {}))
        return {}

    def wait_status(self, service: str, want: list[str]) -> None:
        until(lambda: sorted(self.status(service).values()) == sorted(want), service, 60)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    work = tmp_path_factory.mktemp("panic")
    cores = [State("core-1"), State("core-2")]
    crm = [State("crm-1", serve=200), State("crm-2", serve=200)]
    solo = State("solo", serve=200)
    servers = [serve(s) for s in (*cores, *crm, solo)]
    url = [f"http://127.0.0.1:{s.server_port}" for s in servers]
    web, admin, internal = free_port(), free_port(), free_port()
    dynamic = traefik_config(
        url[0],
        {"crm": url[2], "solo": url[4]},
        core_replicas=[url[1]],
        internal_entry_point=f"internal=http://127.0.0.1:{internal}",
        plugin_replicas={"crm": [url[3]]},
    )
    (work / "dynamic.yml").write_text(yaml.safe_dump(dynamic))
    static = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{web}"},
            "internal": {"address": f"127.0.0.1:{internal}"},
            "traefik": {"address": f"127.0.0.1:{admin}"},
        },
        "providers": {"file": {"filename": str(work / "dynamic.yml")}},
        "api": {"insecure": True, "dashboard": False},
        "log": {"level": "INFO"},
    }
    (work / "traefik.yml").write_text(yaml.safe_dump(static))
    with (work / "traefik.log").open("w") as log:
        proc = subprocess.Popen(
            [str(TRAEFIK), f"--configFile={work / 'traefik.yml'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            found = Edge(
                f"http://127.0.0.1:{web}",
                f"http://127.0.0.1:{admin}",
                f"http://127.0.0.1:{internal}",
                cores,
                crm,
                solo,
            )

            def loaded() -> bool:
                assert proc.poll() is None, (work / "traefik.log").read_text()
                return found.status("core-api") == {url[0]: "DOWN", url[1]: "DOWN"}

            until(loaded, "traefik loading the routes", 60)
            yield found
        finally:
            proc.terminate()
            proc.wait(10)
            for server in servers:
                server.shutdown()
                server.server_close()


def test_no_ready_core_answers_for_itself(edge: Edge) -> None:
    edge.wait_status("core-api", ["DOWN", "DOWN"])
    for method in ("GET", "POST"):
        r = httpx.request(method, f"{edge.url}/api/core/v1/tenants", timeout=30)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "7"
        assert r.json()["error"] == UNAVAILABLE["error"]
        assert r.json()["from"] in {"core-1", "core-2"}


def test_no_ready_core_still_decides(edge: Edge) -> None:
    edge.wait_status("core-api", ["DOWN", "DOWN"])
    decision = httpx.get(f"{edge.internal}{DECISION_PATH}", timeout=30)
    assert decision.status_code == 200, decision.text
    for core in edge.cores:
        core.decide = 503
    try:
        # The decision's own refusal reaches the client through forwardAuth.
        r = httpx.get(f"{edge.url}/api/plugins/crm/v1/contacts", timeout=30)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "7"
        assert r.json()["error"] == UNAVAILABLE["error"]
    finally:
        for core in edge.cores:
            core.decide = 200


def test_no_ready_plugin_replica_is_still_asked(edge: Edge) -> None:
    edge.wait_status("plugin-crm", ["DOWN", "DOWN"])
    edge.wait_status("plugin-solo", ["DOWN"])
    for plugin in ("crm", "solo"):
        r = httpx.get(f"{edge.url}/api/plugins/{plugin}/v1/contacts", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["from"].startswith(plugin)
    assert sum(s.seen["/v1/contacts"] for s in edge.crm) >= 1
    assert edge.solo.seen["/v1/contacts"] >= 1


def test_while_one_server_is_ready_only_it_gets_requests(edge: Edge) -> None:
    first, second = edge.cores
    # A ready core answers 2xx (a 5xx would count as a failed attempt of the passive check).
    first.ready, first.serve = True, 200
    try:
        edge.wait_status("core-api", ["DOWN", "UP"])
        before = second.seen.copy()
        for _ in range(6):
            r = httpx.get(f"{edge.url}/api/core/v1/tenants", timeout=30)
            assert (r.status_code, r.json()["from"]) == (200, "core-1")
        assert second.seen == before
    finally:
        first.ready, first.serve = False, 503
    edge.wait_status("core-api", ["DOWN", "DOWN"])


def test_the_failover_is_loaded_as_written(edge: Edge) -> None:
    r = httpx.get(f"{edge.admin}/api/http/services/core-api@file", timeout=5).json()
    assert r["status"] == "enabled", r
    assert r["failover"]["service"] == f"core-api{CHECKED}"
