"""CPU per request of the two hot routes of the edge path, each on its own service process:
the core's decision (``GET /v1/gateway/authorize``) and a CRM read (``GET /v1/contacts/{id}``
direct to the CRM process), with a trivial core route (``GET /v1/info``) beside them.

    .venv/bin/python -m bench.request_overhead [--rate 200] [--seconds 10] [--rounds 3]
        [--profile DIR --py-spy PATH]

Starts ``deploy/local`` (as ``bench.gateway_edge``), creates a tenant with the CRM and one
contact, then for each target and round: wrk at a fixed ``--rate`` (well under saturation, so
the figure is the work per request, not queueing) and the CPU time (user + system, ``/proc``)
the serving process group used, per request (and net of what it uses idle, measured first); then one closed-loop run (``--connections``, no
rate cap) for the throughput of one worker process. Prints one JSON line per run and a summary
with the median CPU per request of the rounds. ``--profile`` also records the serving process
with py-spy (not a dependency: give its path) during one fixed-rate run per target and writes
the collapsed stacks plus a top-30 self/inclusive table to DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.gateway_edge import bench_topology, cpu_seconds, tenant_token, wrk


def profile_top(collapsed: Path, limit: int = 30) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    lines = [f"samples: {total}", "", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in own.most_common(limit)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in incl.most_common(limit)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="requests/s offered per run")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8, help="for the closed-loop run")
    parser.add_argument("--profile", type=Path, default=None, help="write py-spy profiles here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy executable")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install --no-install-recommends wrk")
    if args.profile and not args.py_spy:
        raise SystemExit("--profile needs py-spy (pip install py-spy in any venv; --py-spy PATH)")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="plexica-bench-")))
        topology = bench_topology(stack, work)
        env = topology.cli_env()
        crm_url, core_url = topology.plugin_urls()["crm"], topology.processes["core"].url
        token = tenant_token(env)
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            f"{env['PLEXICA_PUBLIC_URL']}/api/plugins/crm/v1/contacts",
            json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@bench.example"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        contact = f"/v1/contacts/{r.json()['id']}"
        forwarded = auth | {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": f"/api/plugins/crm{contact}",
            "X-Forwarded-Host": "127.0.0.1",
        }
        targets = {
            "core_info": ("core", f"{core_url}/v1/info", {}),
            "decision": ("core", f"{core_url}/v1/gateway/authorize", forwarded),
            "crm_contact": ("plugin-crm", f"{crm_url}{contact}", auth),
        }
        for _, url, headers in targets.values():
            assert httpx.get(url, headers=headers).status_code == 200, url
            wrk(url, headers, args.rate, 3, 4, work)  # warm-up
        # What each service burns with no request (pollers, refresh tasks), per second: taken
        # out of the per-request figures, which at a modest rate it would otherwise dominate.
        idle_before, idle_began = cpu_seconds(topology), time.monotonic()
        time.sleep(args.seconds)
        idle_after = cpu_seconds(topology)
        idle = {
            svc: (idle_after[svc] - idle_before[svc]) / (time.monotonic() - idle_began)
            for svc in ("core", "plugin-crm")
        }
        print(json.dumps({"idle_cpu_ms_per_s": {k: round(v * 1000, 1) for k, v in idle.items()}}))
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        net: dict[str, list[float]] = {name: [] for name in targets}
        closed: dict[str, list[float]] = {name: [] for name in targets}
        for round_ in range(args.rounds):
            for name, (service, url, headers) in targets.items():
                before, began = cpu_seconds(topology), time.monotonic()
                run = wrk(url, headers, args.rate, args.seconds, 4, work)
                after, took = cpu_seconds(topology), time.monotonic() - began
                used = after[service] - before[service]
                used_us = used * 1e6 / max(run["requests"], 1)
                net_us = (used - idle[service] * took) * 1e6 / max(run["requests"], 1)
                cpu[name].append(used_us)
                net[name].append(net_us)
                load = Path("/proc/loadavg").read_text().split()[0]
                print(
                    json.dumps(
                        {
                            "target": name,
                            "round": round_,
                            "rate": args.rate,
                            **run,
                            "cpu_us_per_request": round(used_us),
                            "net_cpu_us_per_request": round(net_us),
                            "load_average": load,
                        }
                    ),
                    flush=True,
                )
                run = wrk(url, headers, 0, args.seconds, args.connections, work)
                closed[name].append(run["rps"])
                print(
                    json.dumps(
                        {
                            "target": name,
                            "round": round_,
                            "closed_loop": args.connections,
                            "rps": run["rps"],
                            "p50_ms": run["p50_ms"],
                            "p95_ms": run["p95_ms"],
                            "non_2xx": run["non_2xx"],
                        }
                    ),
                    flush=True,
                )
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, (service, url, headers) in targets.items():
                out = args.profile / f"{name}.collapsed"
                spy = subprocess.Popen(
                    [args.py_spy, "record", "--subprocesses", "--nonblocking", "--rate", "500",
                     "--format", "raw", "--output", str(out), "--duration", str(args.seconds),
                     "--pid", str(topology.processes[service].proc.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                wrk(url, headers, args.rate, args.seconds, 4, work)
                spy.wait(timeout=args.seconds + 30)
                if out.exists():
                    (args.profile / f"{name}.top.txt").write_text(profile_top(out))
        for name in targets:
            print(
                json.dumps(
                    {
                        "summary": name,
                        "cpu_us_per_request_median": round(statistics.median(cpu[name])),
                        "net_cpu_us_per_request_median": round(statistics.median(net[name])),
                        "cpu_us_per_request_rounds": [round(c) for c in cpu[name]],
                        "closed_loop_rps_median": round(statistics.median(closed[name])),
                    }
                )
            )


if __name__ == "__main__":
    main()
