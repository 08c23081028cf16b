"""A plugin read route direct vs through the edge (Traefik + the core's decision + rate limit in
Redis), at a fixed request rate, in the local distributed topology; and the decision alone.

    .venv/bin/python -m bench.gateway_edge [--rate 500] [--seconds 20] [--connections 16]

Starts ``deploy/local`` (PostgreSQL, Redis, migrate, core, worker, web, the CRM as its own
process, Traefik with the generated routes) in a temporary folder; creates a tenant with the CRM and 20 contacts, then runs wrk from
loopback against ``GET /v1/contacts/{id}`` (direct to the CRM process, then through Traefik) and
``GET /v1/gateway/authorize`` on the core. wrk has no fixed-rate mode (wrk2 is in no registry
here): a Lua ``delay()`` hands out send slots at ``--rate`` per second across the connections, so
the offered load is capped at the rate and the achieved rate is reported next to the latencies
(P50/P95/P99 from wrk's own histogram). The tenant's CRM limit is raised for the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from bench._util import process_cpu
from deploy.local.topology import LocalTopology
from plexica.cli.main import app as cli

SLUG = "benchedge"
LIMITS = f"tenant:{SLUG}/plugin:crm=10000000,tenant:{SLUG}/core=10000000"

# Slots at a fixed rate shared by the connections of the (single) wrk thread; P50/P95/P99 and
# the counts come from wrk's own histogram in done().
LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } plexica_ts;
int clock_gettime(int clk_id, plexica_ts *tp);
]]
local ts = ffi.new("plexica_ts")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = %(interval)s
local headers = %(headers)s
local next_slot = nil
function request()
  return wrk.format("GET", nil, headers)
end
function delay()
  if interval <= 0 then return 0 end
  local now = now_ms()
  if next_slot == nil or next_slot < now - 50 then next_slot = now end
  local slot = next_slot
  next_slot = next_slot + interval
  return math.max(0, math.floor(slot - now))
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"non_2xx\\": %%d, \\"socket_errors\\": %%d," ..
    " \\"p50_us\\": %%d, \\"p95_us\\": %%d, \\"p99_us\\": %%d, \\"max_us\\": %%d}\\n",
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def lua_table(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()) + "}"


def wrk(
    url: str, headers: dict[str, str], rate: int, seconds: int, connections: int, work: Path
) -> dict[str, Any]:
    assert url.startswith("http://127.0.0.1:"), "benchmarks only load loopback"
    script = work / "rate.lua"
    interval = 1000.0 / rate if rate > 0 else 0
    script.write_text(LUA % {"interval": interval, "headers": lua_table(headers)})
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
    }


def cpu_seconds(topology: LocalTopology) -> dict[str, float]:
    """CPU time (user + system) so far of each service's process group, and of PostgreSQL's
    processes: divided by the requests of a run, where the time goes whatever else runs here."""
    groups = {p.proc.pid: n for n, p in topology.processes.items() if n != "gateway-admin"}
    return process_cpu(groups, {str(topology.workdir / "postgres"): "postgres"})


def plexica(env: dict[str, str], *args: str, password: str | None = None) -> str:
    extra = {"PLEXICA_PASSWORD": password} if password else {}
    result = CliRunner().invoke(cli, list(args), env=env | extra)
    if result.exit_code != 0:
        raise RuntimeError(f"plexica {' '.join(args)}: {result.output}")
    return result.stdout.strip()


def tenant_login(env: dict[str, str]) -> tuple[str, str]:
    """The banner's steps of deploy/local/up: tenant, CRM, password; the admin's email and it."""
    email = f"admin@{SLUG}.example"
    plexica(env, "tenant", "create", SLUG, "--name", "Bench", "--admin-email", email)
    plexica(env, "plugin", "install", "crm", "--tenant", SLUG)
    return email, plexica(env, "user", "reset-password", email, "--tenant", SLUG)


def access_token(env: dict[str, str], email: str, password: str) -> str:
    return plexica(env, "token", "--tenant", SLUG, "--user", email, password=password)


def tenant_token(env: dict[str, str]) -> str:
    """The banner's last step too: a token."""
    return access_token(env, *tenant_login(env))


def bench_topology(stack: ExitStack, work: Path) -> LocalTopology:
    """deploy/local with the CRM, the bench tenant's limits raised, stopped with ``stack``."""
    began = time.monotonic()
    topology = stack.enter_context(
        LocalTopology(
            work / "topology",
            plugins=["crm"],
            extra_env={"PLEXICA_GATEWAY_RATE_LIMITS": LIMITS},
        )
    )
    print(f"topology ready in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return topology


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate",
        type=int,
        action="append",
        help="requests/s offered (repeatable; default 500); 0: as fast as the connections go",
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="direct/edge/decision repeated")
    parser.add_argument(
        "--route",
        choices=["contact", "contacts"],
        default="contact",
        help="GET /v1/contacts/{id} (one row) or /v1/contacts (a page of 20 and a count)",
    )
    args = parser.parse_args()
    rates: list[int] = args.rate or [500]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install --no-install-recommends wrk")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plexica-bench-")))
        topology = bench_topology(stack, work)
        env = topology.cli_env()
        crm_url, core_url = topology.plugin_urls()["crm"], topology.processes["core"].url
        public = env["PLEXICA_PUBLIC_URL"]
        token = tenant_token(env)
        auth = {"Authorization": f"Bearer {token}"}
        ids = []
        for i in range(20):
            r = httpx.post(
                f"{public}/api/plugins/crm/v1/contacts",
                json={"first_name": f"Contact {i}", "email": f"c{i}@bench.example"},
                headers=auth,
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        path = "/v1/contacts" + (f"/{ids[0]}" if args.route == "contact" else "")
        direct = f"{crm_url}{path}"
        edge = f"{public}/api/plugins/crm{path}"
        decision = f"{core_url}/v1/gateway/authorize"
        forwarded = auth | {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": f"/api/plugins/crm{path}",
            "X-Forwarded-Host": "127.0.0.1",
        }
        for url, headers in ((direct, auth), (edge, auth), (decision, forwarded)):
            assert httpx.get(url, headers=headers).status_code == 200, url
            wrk(url, headers, rates[0], 3, args.connections, work)  # warm-up
        results: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for rate, _ in ((rate, i) for rate in rates for i in range(args.rounds)):
            for name, url, headers in (
                ("direct", direct, auth),
                ("edge", edge, auth),
                ("decision", decision, forwarded),
            ):
                before = cpu_seconds(topology)
                run = wrk(url, headers, rate, args.seconds, args.connections, work)
                after = cpu_seconds(topology)
                run["cpu_ms_per_request"] = {
                    svc: round((after[svc] - before[svc]) * 1000 / max(run["requests"], 1), 3)
                    for svc in ("gateway", "core", "plugin-crm", "redis", "postgres")
                }
                run["load_average"] = Path("/proc/loadavg").read_text().split()[0]
                results.setdefault((rate, name), []).append(run)
                print(json.dumps({"target": name, "path": path, "rate": rate, **run}), flush=True)
    for rate in rates:
        # The best round of each (least disturbed by the rest of the machine).
        best = {n: min(results[rate, n], key=lambda r: r["p95_ms"]) for n in ("direct", "edge")}
        direct_run, edge_run = best["direct"], best["edge"]
        summary = {
            "rate": rate,
            "overhead_p50": round(edge_run["p50_ms"] / direct_run["p50_ms"], 2),
            "overhead_p95": round(edge_run["p95_ms"] / direct_run["p95_ms"], 2),
            "edge_minus_direct_p50_ms": round(edge_run["p50_ms"] - direct_run["p50_ms"], 2),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
