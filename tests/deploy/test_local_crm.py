"""A new user's path through the local distributed topology: the CLI commands the banner of
``deploy/local/up`` prints (tenant, CRM install, password, token), then the CRM through the real
Traefik, which asks the core's decision (token, tenant, plugin enabled, limits in real Redis)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from deploy import k8s_render
from deploy.local.topology import BIN, LocalTopology, banner
from plexica.cli.main import app as cli
from plexica.gateway.config import traefik_config
from tests.deploy.conftest import ACME, GLOBEX, GLOBEX_CRM_LIMIT

pytestmark = pytest.mark.slow


def plexica(topology: LocalTopology, *args: str, password: str | None = None) -> str:
    env = topology.cli_env() | ({"PLEXICA_PASSWORD": password} if password else {})
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout.strip()


@dataclass
class Tenant:
    slug: str
    id: str
    token: str


def new_tenant(topology: LocalTopology, slug: str) -> Tenant:
    """Exactly the banner's steps."""
    email = f"admin@{slug}.example"
    line = plexica(
        topology, "tenant", "create", slug, "--name", slug.title(), "--admin-email", email
    )
    plexica(topology, "plugin", "install", "crm", "--tenant", slug)
    password = plexica(topology, "user", "reset-password", email, "--tenant", slug)
    token = plexica(topology, "token", "--tenant", slug, "--user", email, password=password)
    tenant_id = line.rsplit("(id ", 1)[1].rstrip(")")
    return Tenant(slug, tenant_id, token)


@pytest.fixture(scope="module")
def tenants(local_topology: LocalTopology) -> dict[str, Tenant]:
    return {slug: new_tenant(local_topology, slug) for slug in (ACME, GLOBEX)}


def crm(topology: LocalTopology, path: str, tenant: Tenant, **headers: str) -> httpx.Response:
    return httpx.get(
        f"{topology.public_url}/api/plugins/crm/v1{path}",
        headers={"Authorization": f"Bearer {tenant.token}", **headers},
        timeout=10,
    )


def test_banner_tells_a_new_user_how_to_reach_the_crm(local_topology: LocalTopology) -> None:
    text = banner(local_topology)
    assert "plexica plugin install crm --tenant acme" in text
    assert "$PLEXICA_PUBLIC_URL/api/plugins/crm/v1/contacts" in text
    env = (local_topology.workdir / "plexica.env").read_text()
    assert f"export PLEXICA_PUBLIC_URL={local_topology.public_url}\n" in env


def test_crm_through_traefik_with_the_tenant_token(
    local_topology: LocalTopology, tenants: dict[str, Tenant]
) -> None:
    acme = tenants[ACME]
    created = httpx.post(
        f"{local_topology.public_url}/api/plugins/crm/v1/contacts",
        json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example"},
        headers={"Authorization": f"Bearer {acme.token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    trace = uuid.uuid4().hex
    listed = crm(local_topology, "/contacts", acme, **{"X-Trace-ID": trace})
    assert listed.status_code == 200, listed.text
    assert [c["email"] for c in listed.json()["items"]] == ["ada@acme.example"]
    assert listed.headers["X-Trace-ID"] == trace
    # The same trace id in the gateway's, the core's (decision) and the plugin's logs.
    logs = {n: local_topology.workdir / f for n, f in (
        ("gateway", "traefik-access.log"), ("core", "core.log"), ("crm", "plugin-crm.log"),
    )}  # fmt: skip
    deadline = time.monotonic() + 5
    while not all(trace in log.read_text() for log in logs.values()):
        missing = [n for n, log in logs.items() if trace not in log.read_text()]
        assert time.monotonic() < deadline, f"trace id missing from {missing}"
        time.sleep(0.1)


def test_no_token_or_a_forged_one_is_refused_at_the_edge(
    local_topology: LocalTopology, tenants: dict[str, Tenant]
) -> None:
    url = f"{local_topology.public_url}/api/plugins/crm/v1/contacts"
    assert httpx.get(url).status_code == 401
    forged = tenants[ACME].token[:-4] + "AAAA"
    assert httpx.get(url, headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_another_tenant_cannot_see_the_data_by_any_header_or_path(
    local_topology: LocalTopology, tenants: dict[str, Tenant]
) -> None:
    acme, globex = tenants[ACME], tenants[GLOBEX]
    spoofed = {"X-Tenant-ID": acme.id, "X-Tenant-Slug": acme.slug, "X-User-ID": "admin"}
    seen = crm(local_topology, "/contacts", globex, **spoofed)
    assert seen.status_code == 200, seen.text
    assert seen.json()["items"] == []
    for trick in ("/../../core/v1/tenant", "/%2e%2e/%2e%2e/core/v1/tenant", "//contacts"):
        r = crm(local_topology, trick, globex, **spoofed)
        assert r.status_code != 200 or acme.id not in r.text, trick
    # The core route, through the edge, is also globex's own view.
    mine = httpx.get(
        f"{local_topology.public_url}/api/core/v1/tenant",
        headers={"Authorization": f"Bearer {globex.token}", **spoofed},
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["slug"] == GLOBEX


def test_rate_limit_is_429_with_retry_after(
    local_topology: LocalTopology, tenants: dict[str, Tenant]
) -> None:
    """globex's CRM limit is GLOBEX_CRM_LIMIT a minute (other tests used some of it)."""
    statuses = []
    for _ in range(GLOBEX_CRM_LIMIT + 1):
        r = crm(local_topology, "/contacts", tenants[GLOBEX])
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Remaining"] == "0"
    assert r.json()["error"]["code"] == "rate_limited"


def test_disabled_plugin_is_refused_at_the_edge(
    local_topology: LocalTopology, tenants: dict[str, Tenant]
) -> None:
    """The plugin refuses a disabled installation itself too (its own check); what is checked
    here is the edge's refusal: a 404 whose request never reached the plugin process."""
    acme, plugin_log = tenants[ACME], local_topology.workdir / "plugin-crm.log"
    assert crm(local_topology, "/contacts", acme).status_code == 200
    plexica(local_topology, "plugin", "disable", "crm", "--tenant", ACME)
    deadline = time.monotonic() + 30
    while True:
        trace = uuid.uuid4().hex
        refused = crm(local_topology, "/contacts", acme, **{"X-Trace-ID": trace})
        if refused.status_code == 404:
            time.sleep(0.2)  # the plugin's access log line, had the request reached it
            if trace not in plugin_log.read_text():
                break
        assert time.monotonic() < deadline, "not refused at the edge after the plugin was disabled"
        time.sleep(0.05)
    assert refused.json()["error"]["code"] == "not_found"
    plexica(local_topology, "plugin", "enable", "crm", "--tenant", ACME)


def test_clients_see_their_rate_limit_on_a_200_too(
    local_topology: LocalTopology, tenants: dict[str, Tenant]
) -> None:
    """ADR 0048: Traefik hands the decision's RateLimit-* to the service with the request
    (forwardAuth replaces a client's copy) and the service answers them back: a client sees its
    budget before it runs out, not only on the 429."""
    acme = tenants[ACME]
    first = crm(local_topology, "/contacts", acme, **{"RateLimit-Remaining": "999999"})
    second = crm(local_topology, "/contacts", acme)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["RateLimit-Limit"] == "100"
    remaining = int(first.headers["RateLimit-Remaining"])
    assert first.headers.get_list("RateLimit-Remaining") == [str(remaining)]
    assert remaining < 100
    # GCRA refills one request every 0.6 s at 100/min: the next one costs one, or nothing.
    assert int(second.headers["RateLimit-Remaining"]) in (remaining - 1, remaining)
    assert int(first.headers["RateLimit-Reset"]) >= 0
    core = httpx.get(
        f"{local_topology.public_url}/api/core/v1/tenant",
        headers={"Authorization": f"Bearer {acme.token}"},
        timeout=10,
    )
    assert core.status_code == 200
    assert core.headers["RateLimit-Limit"] == "100"
    # Straight to the plugin (no edge): only numbers are ever repeated.
    direct = httpx.get(
        local_topology.processes["plugin-crm"].url + "/v1/contacts",
        headers={"RateLimit-Limit": "lots", "RateLimit-Remaining": "7"},
        timeout=10,
    )
    assert "RateLimit-Limit" not in direct.headers
    assert direct.headers["RateLimit-Remaining"] == "7"


def test_chart_routes_sidecar_writes_the_installed_plugins_routes(
    local_topology: LocalTopology, tenants: dict[str, Tenant], tmp_path: Path
) -> None:
    """The chart's `routes` sidecar, its arguments (the core's URL made this topology's) and the
    chart's plugin URLs, run against this topology's core with no database login (ADR 0213):
    the file it writes routes the installed CRM only (billing is deployed but installed
    nowhere), as `plexica gateway config traefik` renders it."""
    docs = k8s_render.documents(k8s_render.render("values-self-hosted.yaml"))
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "plexica-gateway"
    )
    (routes,) = [
        c for c in gateway["spec"]["template"]["spec"]["containers"] if c["name"] == "routes"
    ]
    platform = next(d for d in docs if d["metadata"]["name"] == "plexica-platform-config")["data"]
    output = tmp_path / "plexica.yml"
    local = {
        "--output=": f"--output={output}",
        "--core-url=": f"--core-url={local_topology.processes['core'].url}",
    }
    args = [next((v for k, v in local.items() if a.startswith(k)), a) for a in routes["args"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")} | {
        "PLEXICA_PLUGIN_URLS": platform["PLEXICA_PLUGIN_URLS"],
        "PLEXICA_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [str(BIN / "plexica"), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not output.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the watcher wrote nothing"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    assert yaml.safe_load(output.read_text()) == traefik_config(
        local_topology.processes["core"].url,
        {"crm": "http://plexica-plugin-crm:3000"},
        "http://plexica-web:3000",
        live_host_suffix="-any",
    )
