"""Gateway figures: the decision endpoint alone (token, tenant cache, limiter) under wrk, beside
a trivial core route on the same server.

    .venv/bin/python -m bench.gateway [--seconds 10] [--connections 20] [--redis | --redis-url URL]

Starts its own embedded PostgreSQL in a temporary folder, serves the core with uvicorn (one
process) on loopback, creates a tenant, and prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.tenancy import fresh_database
from plexica.app import create_app
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.ports import free_port
from plexica.settings import Settings
from plexica_sdk.logs import configure_logging
from tests.support.tokens import StaticIssuers

# wrk's --latency table stops at 50/75/90/99: its Lua hook gives any percentile (microseconds).
_PERCENTILES = """
done = function(summary, latency, requests)
  for _, p in ipairs({50, 90, 95, 99}) do
    io.write(string.format("pct %d %d\\n", p, latency:percentile(p)))
  end
end
"""


def wrk(url: str, headers: dict[str, str], seconds: int, connections: int) -> dict[str, Any]:
    assert url.startswith("http://127.0.0.1:"), "benchmarks only load loopback"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_PERCENTILES)
        script.flush()
        args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", script.name]
        for key, value in headers.items():
            args += ["-H", f"{key}: {value}"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    pct = {int(p): int(us) / 1000 for p, us in re.findall(r"^pct (\d+) (\d+)$", out, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        **{f"p{p}_ms": round(ms, 2) for p, ms in sorted(pct.items())},
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


async def _migrated(server_url: str) -> None:
    db = await fresh_database(server_url, "bench_gateway")
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--redis-url", default=None, help="limit in this Redis")
    parser.add_argument("--redis", action="store_true", help="start a Redis and limit in it")
    args = parser.parse_args()
    if args.redis:
        from bench._servers import harness
        from tests.harness import servers

        with harness():
            args.redis_url = servers.ensure("redis")["url"]
            measure(args)
        return
    measure(args)


def measure(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install --no-install-recommends wrk")
    configure_logging("bench", "WARNING", "json")
    work = Path(tempfile.mkdtemp(prefix="plexica-bench-gw-"))
    pg = EmbeddedPostgres(work / "pg", database="postgres")
    pg.start()
    try:
        asyncio.run(_migrated(pg.url))
        url = pg.url.rsplit("/", 1)[0] + "/bench_gateway"
        settings = Settings(
            database_url=url,
            data_dir=work / "data",
            redis_url=args.redis_url,
            gateway_rate_limit=1_000_000_000,  # measure the decision, not refusals
            log_level="WARNING",
        )
        issuers = StaticIssuers()
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, verifier=issuers.verifier()),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        slug = "bench-" + uuid.uuid4().hex[:6]
        r = httpx.post(
            f"{base}/v1/tenants",
            json={"slug": slug, "name": "Bench", "admin_email": "a@bench.example"},
            headers=issuers.operator_headers(),
            timeout=60,
        )
        r.raise_for_status()
        issuers.add_tenant(uuid.UUID(r.json()["id"]), slug)
        token = issuers.token(f"plexica-{slug}", roles=["member"], ttl=3600)
        decision = {
            "Authorization": f"Bearer {token}",
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": "/api/core/v1/tenant",
            "X-Forwarded-Host": "bench",
        }
        assert httpx.get(f"{base}/v1/gateway/authorize", headers=decision).status_code == 200
        limiter = "redis" if args.redis_url else "memory"
        for name, path, headers in (
            ("core_info_direct", "/v1/info", {}),
            ("decision_public_route", "/v1/gateway/authorize", {"X-Forwarded-Uri": "/"}),
            ("decision_endpoint", "/v1/gateway/authorize", decision),
        ):
            wrk(base + path, headers, 2, args.connections)  # warm-up
            figures = wrk(base + path, headers, args.seconds, args.connections)
            print(json.dumps({"bench": name, "limiter": limiter, **figures}), flush=True)
        server.should_exit = True
        thread.join(15)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
