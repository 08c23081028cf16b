"""A rolling restart of the core under steady open-loop load on the local topology: two core
instances behind Traefik, restarted one after the other (SIGTERM, drain, start, routed again);
prints requests and failures by status, latency percentiles and the rate achieved, for a steady
period first (the baseline of the same run) and then across the restart.

    .venv/bin/python -m bench.rolling_restart [--rate 200] [--steady 10] [--drain 10]

The load is ``GET /api/core/v1/tenant`` with a tenant's token through Traefik (each request is
decided by the core's forward-auth, then served by a core), sent by vegeta (``bench/vegeta.py``):
a Python client on the same two cores could not send 200 a second. The test at a lower rate is
``tests/deploy/test_rolling_restart.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import vegeta
from deploy.local.topology import LocalTopology
from tests.support.cli import tenant_token
from tests.support.openloop import OpenLoop, Shot

SLUG = "rolling"


def figures(all_shots: list[Shot], began: float, ended: float) -> dict[str, object]:
    shots = [s for s in all_shots if began <= s.sent < ended]
    part = OpenLoop("", {}, 0, shots=shots)
    return {
        "requests": len(shots),
        "achieved_rps": round(len(shots) / (ended - began), 1),
        "failed_by_status": dict(part.failures()),
        "p50_ms": round(part.percentile_ms(50), 1),
        "p95_ms": round(part.percentile_ms(95), 1),
        "p99_ms": round(part.percentile_ms(99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of baseline first")
    parser.add_argument("--drain", type=float, default=10.0, help="PLEXICA_DRAIN_SECONDS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plexica-rolling-") as tmp:
        limits = f"tenant:{SLUG}/core=100000000"
        with LocalTopology(
            Path(tmp) / "topology",
            plugins=[],
            core_replicas=2,
            extra_env={
                "PLEXICA_DRAIN_SECONDS": f"{args.drain:g}",
                "PLEXICA_GATEWAY_RATE_LIMITS": limits,
                "PLEXICA_LOG_LEVEL": "WARNING",
            },
        ) as topology:
            env = topology.cli_env()
            token = tenant_token(env, SLUG)
            url = f"{env['PLEXICA_PUBLIC_URL']}/api/core/v1/tenant"
            with vegeta.attacking(url, {"Authorization": f"Bearer {token}"}, args.rate) as load:
                began = time.time()
                time.sleep(args.steady)
                rolling = time.time()
                topology.rolling_restart(["core", "core-2"])
                ended = time.time()
            shots = load.shots
            print(
                json.dumps(
                    {
                        "rate_offered": args.rate,
                        "drain_s": args.drain,
                        "steady": figures(shots, began, rolling),
                        "rolling_restart": figures(shots, rolling, ended)
                        | {"seconds": round(ended - rolling, 1)},
                    },
                    indent=2,
                )
            )


if __name__ == "__main__":
    main()
