"""The CRM contacts list at constant rates, direct vs through Traefik vs through ``plexica up``'s
embedded edge, with an open-loop generator (vegeta); finds the knee (issue 20).

    .venv/bin/python -m bench.edge [--rates 100,250,500,750] [--seconds 60]

Starts ``deploy/local`` (PostgreSQL, Redis, core, worker, web, the CRM as its own process,
Traefik) and, beside it, a ``plexica up`` (the core, the mounted CRM and the web shell behind the
embedded edge, one process, on its own embedded PostgreSQL; its limiter in the topology's Redis,
database 1: ADR 0233). Each platform gets a tenant with the CRM, 20 contacts and a raised limit.
Then for each rate, ``vegeta attack -rate R/1s -duration Ns`` sends
``GET /v1/contacts?limit=20`` (20 rows) with the tenant's bearer token to: **direct** (the CRM
process), **traefik** (``/api/plugins/crm/...`` through Traefik, forward auth to the core's
decision, limiter in Redis) and **embedded** (the same path on ``plexica up``). vegeta sends on
schedule whatever the answers do (a new worker when all are waiting), so a slow server shows up
in the latencies instead of lowering the offered rate.

Printed per run: the rate sent and the rate answered with success, P50/P95/P99/max (vegeta's
report), the answers by status (with how many non-2xx carried ``Retry-After``), the CPU time
(user + system, /proc) of every process divided by the requests, and the load average before
and after. Before each run the bench waits (up to 20 s) until the processes are idle again: the
requests vegeta gave up on are still being served, and would be counted in the next run. Then a
summary with each run against the goal of issue 20 (P95 < 15 ms, P99 < 50 ms, no errors, ≤ 2.5
ms of CPU a request on the path, P50 ≤ 1.5x direct) and where each target's knee is. vegeta is
built by ``scripts/install-bench-tools`` when it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from bench._util import process_cpu, wait_http
from bench.gateway_edge import LIMITS, access_token, bench_topology, tenant_login
from bench.vegeta import binary
from deploy.local.topology import _terminate
from plexica.kit.ports import free_port

ROUTE = "/v1/contacts?limit=20"
ROWS = 20
# The goal of issue 20, per run; and below KEPT_UP of the offered rate answered with success,
# a target has fallen behind whatever its latencies say.
P95_MS, P99_MS, CPU_MS, OVERHEAD_P50 = 15.0, 50.0, 2.5, 1.5
KEPT_UP = 0.95
# Both platforms idle (pollers, health checks) stay under this share of a core.
IDLE_CORES = 0.15
# The processes that serve a request of each target; the others' CPU is shown apart.
PATHS = {
    "direct": ("plugin-crm", "postgres"),
    "traefik": ("traefik", "core", "plugin-crm", "redis", "postgres"),
    "embedded": ("up", "up-postgres", "redis"),
}


@dataclass(frozen=True)
class Report:
    """What ``vegeta report -type=json`` says of one attack (its durations are nanoseconds)."""

    requests: int
    sent_per_s: float
    ok_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    errors: list[str]
    # Non-2xx status → how many of them carried Retry-After (from ``vegeta encode``).
    retry_after: dict[int, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Report:
        raw = json.loads(text)
        lat = raw["latencies"]
        return cls(
            requests=int(raw["requests"]),
            sent_per_s=float(raw["rate"]),
            ok_per_s=float(raw["throughput"]),
            p50_ms=lat["50th"] / 1e6,
            p95_ms=lat["95th"] / 1e6,
            p99_ms=lat["99th"] / 1e6,
            max_ms=lat["max"] / 1e6,
            statuses={int(code): int(n) for code, n in (raw.get("status_codes") or {}).items()},
            errors=list(raw.get("errors") or []),
        )

    @property
    def failed(self) -> int:
        """Answers outside 2xx, and requests with no answer (vegeta's status 0)."""
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)


def retry_after(lines: Iterable[str]) -> dict[int, int]:
    """Per non-2xx answer's status, the results (``vegeta encode --to=json`` lines) that carried
    Retry-After; requests with no answer (status 0) have no headers to tell."""
    out: dict[int, int] = {}
    for line in lines:
        if not line.strip():
            continue
        result = json.loads(line)
        code = int(result["code"])
        if code == 0 or 200 <= code < 300:
            continue
        out.setdefault(code, 0)
        if (result.get("headers") or {}).get("Retry-After"):
            out[code] += 1
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def attack(
    vegeta: str, url: str, token: str, rate: int, seconds: int, work: Path
) -> tuple[Report, float]:
    """One constant-rate run; its report and the CPU seconds vegeta itself used."""
    assert url.startswith("http://127.0.0.1:"), "benchmarks only load loopback"
    targets, results = work / "targets.http", work / "results.bin"
    targets.write_text(f"GET {url}\nAuthorization: Bearer {token}\n")
    began = _children_cpu()
    subprocess.run(
        [vegeta, "attack", f"-rate={rate}/1s", f"-duration={seconds}s", f"-targets={targets}",
         "-timeout=10s", "-max-body=0", f"-output={results}"],
        check=True,
    )  # fmt: skip
    used = _children_cpu() - began
    out = subprocess.run(
        [vegeta, "report", "-type=json", str(results)], capture_output=True, text=True, check=True
    ).stdout
    report = Report.parse(out)
    if report.failed:
        encoded = subprocess.run(
            [vegeta, "encode", "--to=json", str(results)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        report = replace(report, retry_after=retry_after(encoded.splitlines()))
    return report, used


@dataclass
class Embedded:
    """A ``plexica up`` started for the run."""

    url: str
    proc: subprocess.Popen[bytes]
    data_dir: Path

    def cli_env(self) -> dict[str, str]:
        return {"PLEXICA_DATA_DIR": str(self.data_dir)}


@contextmanager
def embedded_up(work: Path, redis_url: str) -> Iterator[Embedded]:
    port, data_dir = free_port(), work / "up"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    env |= {
        "PLEXICA_DATA_DIR": str(data_dir),
        "PLEXICA_PORT": str(port),
        "PLEXICA_LOG_FORMAT": "json",  # as the topology's services log
        "PLEXICA_SHUTDOWN_GRACE_SECONDS": "2",
        # Its own Redis database: the same limiter as the topology's, not its counters.
        "PLEXICA_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1",
        "PLEXICA_GATEWAY_RATE_LIMITS": LIMITS,
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("plexica")), "up"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=(work / "up.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=180)
        yield Embedded(f"http://127.0.0.1:{port}", proc, data_dir)
    finally:
        _terminate(proc, grace=60)


def add_contacts(public_url: str, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    for i in range(ROWS):
        r = httpx.post(
            f"{public_url}/api/plugins/crm/v1/contacts",
            json={"first_name": f"Contact {i}", "email": f"c{i}@bench.example"},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 201, r.text


def platform_token(env: dict[str, str]) -> Callable[[], str]:
    """A tenant with the CRM on the platform ``env`` reaches; a new token of its admin per call."""
    email, password = tenant_login(env)

    def token() -> str:
        deadline = time.monotonic() + 120
        while True:
            try:
                return access_token(env, email, password)
            except RuntimeError:  # the sign-in page answers 503 while a backlog drains
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    return token


def settle(cpu: Callable[[], dict[str, float]], timeout: float = 20.0) -> float:
    """Wait until every process measured uses less than IDLE_CORES over a second, so that the
    backlog one run leaves (requests vegeta gave up on are still served) is not counted in the
    next; the seconds it took, ``timeout`` when they never got that idle."""
    began = time.monotonic()
    last = sum(cpu().values())
    while time.monotonic() - began < timeout:
        time.sleep(1)
        now = sum(cpu().values())
        if now - last < IDLE_CORES:
            break
        last = now
    return time.monotonic() - began


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    token: Callable[[], str]  # a fresh one per run: a run must not outlive it (300 s)


@dataclass(frozen=True)
class Run:
    target: str
    rate: int
    seconds: int
    report: Report
    cpu_ms: dict[str, float]  # per request, by process (and vegeta)
    load_before: str
    load_after: str
    settled_s: float = 0.0  # waited before it for the previous run's backlog

    @property
    def path_cpu_ms(self) -> float:
        return sum(self.cpu_ms.get(name, 0.0) for name in PATHS[self.target])

    def misses(self, direct: Run | None = None) -> list[str]:
        """Where this run falls short of the goal (nothing: it meets it)."""
        r, out = self.report, []
        if r.ok_per_s < KEPT_UP * self.rate:
            out.append(f"{r.ok_per_s:.0f}/s answered")
        if r.failed:
            out.append(f"{r.failed} errors")
        if r.p95_ms >= P95_MS:
            out.append(f"P95 {r.p95_ms:.1f} ms")
        if r.p99_ms >= P99_MS:
            out.append(f"P99 {r.p99_ms:.1f} ms")
        if self.path_cpu_ms > CPU_MS:
            out.append(f"CPU {self.path_cpu_ms:.2f} ms")
        if direct is not None and r.p50_ms > OVERHEAD_P50 * direct.report.p50_ms:
            out.append(f"P50 {r.p50_ms / direct.report.p50_ms:.2f}x direct")
        return out


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def describe(run: Run) -> str:
    r = run.report
    statuses = "  ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
    lines = [
        f"== {run.target} at {run.rate}/s for {run.seconds} s "
        f"(load average {run.load_before} -> {run.load_after};"
        f" {run.settled_s:.0f} s to idle before it) ==",
        f"  sent {r.sent_per_s:.1f}/s  answered 2xx/3xx {r.ok_per_s:.1f}/s  "
        f"requests {r.requests}  failed {r.failed}",
        f"  latency P50 {r.p50_ms:.2f} ms  P95 {r.p95_ms:.2f} ms  P99 {r.p99_ms:.2f} ms  "
        f"max {r.max_ms:.2f} ms",
        f"  status {statuses}",
    ]
    if r.retry_after:
        lines.append(
            "  with Retry-After: "
            + "  ".join(f"{code}: {n} of {r.statuses[code]}" for code, n in r.retry_after.items())
        )
    if r.errors:
        lines.append(f"  errors {'; '.join(r.errors[:5])}")
    path = "  ".join(f"{p} {run.cpu_ms.get(p, 0.0):.3f}" for p in PATHS[run.target])
    others = "  ".join(
        f"{p} {ms:.3f}" for p, ms in run.cpu_ms.items() if p not in PATHS[run.target]
    )
    lines.append(f"  CPU ms/request on the path: {path}  = {run.path_cpu_ms:.3f}")
    lines.append(f"  CPU ms/request elsewhere: {others}")
    return "\n".join(lines)


def summary(runs: list[Run]) -> str:
    direct = {run.rate: run for run in runs if run.target == "direct"}
    lines = [
        "| rate | target | sent/s | 2xx/s | P50 ms | P95 ms | P99 ms | max ms | failed"
        " | CPU ms/req (path) | P50 vs direct | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r, base = run.report, direct.get(run.rate)
        vs = "" if base is None or run is base else f"{r.p50_ms / base.report.p50_ms:.2f}x"
        misses = run.misses(None if run is base else base)
        lines.append(
            f"| {run.rate}/s | {run.target} | {r.sent_per_s:.0f} | {r.ok_per_s:.0f} "
            f"| {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.0f} | {r.failed} "
            f"| {run.path_cpu_ms:.2f} | {vs} | {'; '.join(misses) or 'met'} |"
        )
    lines.append("")
    for target in PATHS:
        mine = sorted((run for run in runs if run.target == target), key=lambda run: run.rate)
        lines.append(f"{target}: {knee(mine, direct)}")
    return "\n".join(lines)


def knee(runs: list[Run], direct: dict[int, Run]) -> str:
    """The highest rate before the first that misses the goal, and what that one missed."""
    held = None
    for run in runs:
        base = None if run.target == "direct" else direct.get(run.rate)
        misses = run.misses(base)
        if misses:
            before = f"meets the goal up to {held}/s" if held else "misses the goal at every rate"
            return f"{before}; at {run.rate}/s: {', '.join(misses)}"
        held = run.rate
    return f"meets the goal at every rate run (up to {held}/s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,250,500,750", help="requests/s, comma-separated")
    parser.add_argument("--seconds", type=int, default=60, help="of each run")
    args = parser.parse_args()
    try:
        rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates takes whole numbers separated by commas, not {args.rates!r}")
    if not rates or min(rates) < 1 or args.seconds < 1:
        parser.error("--rates and --seconds must be at least 1")
    vegeta = binary()
    runs: list[Run] = []
    load_at_launch = load_average()  # the machine's own, before this bench starts anything
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plexica-bench-")))
        topology = bench_topology(stack, work)
        up = stack.enter_context(embedded_up(work, topology.redis_url))
        topology_token = platform_token(topology.cli_env())
        up_token = platform_token(up.cli_env())
        add_contacts(topology.public_url, topology_token())
        add_contacts(up.url, up_token())
        targets = [
            Target("direct", topology.plugin_urls()["crm"] + ROUTE, topology_token),
            Target("traefik", f"{topology.public_url}/api/plugins/crm{ROUTE}", topology_token),
            Target("embedded", f"{up.url}/api/plugins/crm{ROUTE}", up_token),
        ]
        groups = {p.proc.pid: n for n, p in topology.processes.items() if n != "gateway-admin"}
        groups = {pid: "traefik" if n == "gateway" else n for pid, n in groups.items()}
        groups[up.proc.pid] = "up"
        databases = {
            str(topology.workdir / "postgres"): "postgres",
            str(up.data_dir / "pg"): "up-postgres",
        }
        for target in targets:
            token = target.token()
            page = httpx.get(target.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) == ROWS, page.text
            attack(vegeta, target.url, token, min(rates[0], 100), 3, work)  # warm-up
        load_at_start = load_average()
        for rate in rates:
            for target in targets:
                token = target.token()
                settled = settle(lambda: process_cpu(groups, databases))
                load_before, before = load_average(), process_cpu(groups, databases)
                report, vegeta_s = attack(vegeta, target.url, token, rate, args.seconds, work)
                after = process_cpu(groups, databases)
                per = 1000 / max(report.requests, 1)
                cpu = {name: (after[name] - before[name]) * per for name in after}
                run = Run(
                    target.name,
                    rate,
                    args.seconds,
                    report,
                    cpu | {"vegeta": vegeta_s * per},
                    load_before,
                    load_average(),
                    settled,
                )
                runs.append(run)
                print(describe(run), flush=True)
    print(
        f"\nload average (1, 5, 15 min) before the bench started: {load_at_launch}; when the runs"
        f" began: {load_at_start}; at the end: {runs[-1].load_after}"
    )
    print(f"on {os.cpu_count()} CPUs; goal: P95 < {P95_MS:g} ms, P99 < {P99_MS:g} ms, no errors,")
    print(f"≤ {CPU_MS:g} ms CPU/request on the path, P50 ≤ {OVERHEAD_P50:g}x direct\n")
    print(summary(runs))


if __name__ == "__main__":
    main()
