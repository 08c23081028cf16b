"""Time the local distributed topology: cold start, a rollout of core/worker/web, a rollback.

    .venv/bin/python -m bench.deploy_rollback [--rounds 3]

Both "releases" are this build: the figures are the cost of the procedure (stop, start, pass
/ready) on this machine, the floor under a real rollback's time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from deploy.local.topology import LocalTopology

SERVICES = ["core", "worker", "web"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plexica-bench-") as workdir:
        began = time.monotonic()
        with LocalTopology(Path(workdir), plugins=[]) as topology:
            start = time.monotonic() - began
            rollouts, rollbacks = [], []
            for _ in range(args.rounds):
                rollouts.append(topology.restart_services(SERVICES))
                rollbacks.append(topology.restart_services(SERVICES))
    print(f"cold start (PostgreSQL, Redis, migrate, core, worker, web, Traefik): {start:.1f} s")
    print(
        f"rollout N+1 of core+worker+web, median of {args.rounds}: {statistics.median(rollouts):.1f} s"
    )
    print(
        f"rollback to N of core+worker+web, median of {args.rounds}: {statistics.median(rollbacks):.1f} s"
    )


if __name__ == "__main__":
    main()
