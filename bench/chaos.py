"""Chaos on the local distributed topology with a Kafka broker: under steady load through the
edge, kill -9 and bring back, in turn, Redis, the broker, the worker (outbox relay), the CRM and
Billing plugins, the core and PostgreSQL; print per fault the requests by status, the 5xx
outside PostgreSQL's downtime, the events lost and duplicated, and the time to recover.

    .venv/bin/python -m bench.chaos [--rate 40] [--settle 5] [--core-replicas 2]
        [--plugin-replicas 2]

Starts Apache Kafka (KRaft, one node) and ``deploy/local`` with ``PLEXICA_KAFKA_BROKERS`` set
(PostgreSQL, Redis, cores, worker, web, the CRM and Billing as their own processes, each
``--plugin-replicas`` times, Traefik) in
a temporary folder, creates a tenant with both plugins, then sends ``--rate`` requests/s through
Traefik: reads (``GET /v1/contacts``), one write in ten ``POST /v1/contacts`` (event
``crm.contact.created``) and one in ten a deal created and moved to "won" (``crm.deal.won``:
Billing drafts one invoice per won deal). An audit consumer group of its own reads the CRM's
topics and counts deliveries by event id.

Services, Redis and Traefik come back through the topology's supervisor (restart with backoff,
ADR 0146); PostgreSQL and the broker are started again by this script at once, as their
StatefulSets would. For each fault: "back" is when the killed server answers again;
"recovered" is the first of 10 successive successful requests after that; the window counted
is from the kill to recovery. Events are counted by the window their outbox row was written in
(``platform.outbox.time``): lost = written but never read from the topic by the audit group
(after the run settles), duplicated = read more than once; effects: won deals without exactly
one Billing invoice. ``caught up`` is when the last event of the window was read, after "back".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from bench.gateway_edge import plexica
from deploy.local.topology import LocalTopology
from plexica.events.relay import ensure_topics
from plexica_sdk.events import from_kafka
from tests.harness.servers import KafkaBroker

SLUG = "benchchaos"
LIMITS = ",".join(
    f"tenant:{SLUG}/{scope}=10000000" for scope in ("plugin:crm", "plugin:billing", "core")
)
STREAK = 10
TOPICS = {"crm.contact", "crm.deal"}
DEFAULT_FAULTS = "redis,broker,worker,plugin-crm,plugin-billing,core,postgres"


@dataclass
class Shot:
    sent: float
    kind: str  # read, contact, deal, win
    status: str  # HTTP status, or the transport error's name
    contact: str | None = None


@dataclass
class Load:
    url: str
    headers: dict[str, str]
    rate: float
    shots: list[Shot] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def one(self, http: httpx.AsyncClient, n: int) -> None:
        kind = {0: "contact", 5: "deal"}.get(n % 10, "read")
        sent = time.monotonic()
        contact = None
        try:
            if kind == "contact":
                r = await http.post(
                    self.url + "/contacts",
                    json={"first_name": f"Chaos {n}", "email": f"c{n}@chaos.example"},
                    headers=self.headers,
                )
                if r.status_code == 201:
                    contact = str(r.json()["id"])
            elif kind == "deal":
                r = await http.post(
                    self.url + "/deals",
                    json={"title": f"Deal {n}", "amount": "100.00", "currency": "EUR"},
                    headers=self.headers,
                )
                if r.status_code == 201:
                    self.shots.append(Shot(sent, kind, str(r.status_code)))
                    sent, kind = time.monotonic(), "win"
                    r = await http.post(
                        f"{self.url}/deals/{r.json()['id']}/stage",
                        json={"stage_id": "won"},
                        headers=self.headers,
                    )
            else:
                r = await http.get(self.url + "/contacts?limit=5", headers=self.headers)
            status = str(r.status_code)
            if r.status_code == 503 and "retry-after" not in r.headers:
                status = "503 without Retry-After"  # the target: every 503 says when to retry
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        self.shots.append(Shot(sent, kind, status, contact))

    async def run(self) -> None:
        """Open loop: a request every 1/rate s whatever the answers (none waits for another)."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
            tasks: set[asyncio.Task[None]] = set()
            began, n = time.monotonic(), 0
            while not self.stop.is_set():
                task = asyncio.create_task(self.one(http, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    def ok_streak_after(self, since: float, until: float = float("inf")) -> float | None:
        ordered = sorted((s for s in self.shots if since <= s.sent < until), key=lambda s: s.sent)
        run = 0
        for shot in ordered:
            run = run + 1 if shot.status.startswith("2") else 0
            if run == STREAK:
                return shot.sent
        return None


@dataclass
class Audit:
    """An independent consumer group on the CRM's topics: every record read, by event id."""

    bootstrap: str
    reads: dict[str, list[float]] = field(default_factory=dict)  # event id -> monotonic times
    stop: threading.Event = field(default_factory=threading.Event)
    assigned: threading.Event = field(default_factory=threading.Event)

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        await ensure_topics(self.bootstrap, TOPICS, 6)
        consumer = AIOKafkaConsumer(
            *sorted(TOPICS),
            bootstrap_servers=self.bootstrap,
            group_id="chaos-audit",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while not self.stop.is_set():
                if consumer.assignment():
                    self.assigned.set()
                batches = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in batches.values():
                    for record in records:
                        event = from_kafka(record.value, record.headers)
                        self.reads.setdefault(str(event.id), []).append(now)
                if batches:
                    with contextlib.suppress(Exception):  # broker down: read again, counted
                        await consumer.commit()
        finally:
            await consumer.stop()


def wait(predicate: Callable[[], bool], timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
    return time.monotonic()


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def kill_service(topology: LocalTopology, name: str) -> Callable[[], bool]:
    process = topology.processes[name]
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(30)
    if name == "redis":
        return lambda: process.proc.poll() is None and port_open(process.port)
    return lambda: process.proc.poll() is None and answers(process.url + "/ready")


def kill_worker(topology: LocalTopology) -> Callable[[], bool]:
    """The worker serves no HTTP: it is back when its process runs again."""
    process = topology.processes["worker"]
    old = process.proc.pid
    os.killpg(old, signal.SIGKILL)
    process.proc.wait(30)
    return lambda: process.proc.pid != old and process.proc.poll() is None


def kill_broker(broker: KafkaBroker) -> Callable[[], bool]:
    broker.kill()
    broker.start(timeout=120)
    return lambda: port_open(broker.port)


def kill_postgres(topology: LocalTopology) -> Callable[[], bool]:
    pg = topology._pg
    assert pg is not None
    pid = pg.postmaster_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait(lambda: not pg.running(), 30)
    for _ in range(50):  # its backends exit when they notice the postmaster is gone
        try:
            pg.start()
            break
        except Exception:
            time.sleep(0.2)
    return pg.running


@dataclass
class Written:
    """The outbox rows of the run (what the platform committed to deliver)."""

    id: str
    type: str
    at: float  # monotonic, from the row's event time
    deal: str | None


async def outbox(database_url: str, wall_to_mono: float) -> list[Written]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT o.id, o.type, o.time, o.data FROM platform.outbox o"
            " JOIN platform.tenants t ON t.id = o.tenant_id"
            " WHERE t.slug = $1 AND o.type = ANY($2::text[])",
            SLUG,
            ["crm.contact.created", "crm.deal.won"],
        )
    finally:
        await conn.close()
    out = []
    for r in rows:
        data = json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]
        deal = data.get("deal_id") if r["type"] == "crm.deal.won" else None
        out.append(Written(str(r["id"]), r["type"], r["time"].timestamp() - wall_to_mono, deal))
    return out


def invoices_per_deal(url: str, headers: dict[str, str]) -> Counter[str] | None:
    """Billing's invoices by CRM deal; None while Billing does not answer (e.g. its breaker)."""
    per: Counter[str] = Counter()
    offset = 0
    while True:
        try:
            r = httpx.get(url, params={"limit": 100, "offset": offset}, headers=headers, timeout=30)
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        items = r.json()["items"]
        per.update(str(i["crm_deal_id"]) for i in items if i["crm_deal_id"])
        if len(items) < 100:
            return per
        offset += 100


def fault_row(
    load: Load,
    name: str,
    killed: float,
    back: float,
    pg_down: list[tuple[float, float]],
    events: list[Written],
    audit: Audit,
    invoices: Counter[str],
    until: float,
) -> dict[str, object]:
    # Not past the next fault: its failures are its own.
    recovered = load.ok_streak_after(back, until)
    end = recovered if recovered is not None else until
    window = [s for s in load.shots if killed <= s.sent <= end]
    failed = Counter(s.status for s in window if not s.status.startswith("2"))
    in_pg_down = [s for s in window if any(a <= s.sent <= b for a, b in pg_down)]
    outside = [s for s in window if s.status[0] == "5" and s not in in_pg_down]
    # Events written from the kill up to the next fault (delivery may lag the requests).
    written = [e for e in events if killed <= e.at < until]
    reads = [audit.reads.get(e.id, []) for e in written]
    won = [e.deal for e in written if e.deal]
    caught = max((r[0] for r in reads if r), default=back)
    return {
        "fault": name,
        "requests": len(window),
        "by_status": dict(sorted(Counter(s.status for s in window).items())),
        "failed": dict(sorted(failed.items())),
        "5xx_outside_pg_down": len(outside),
        "events_written": len(written),
        "events_lost": sum(1 for r in reads if not r),
        "events_read_twice": sum(1 for r in reads if len(r) > 1),
        "deals_won": len(won),
        "invoices_missing": sum(1 for d in won if invoices[d] == 0),
        "invoices_duplicated": sum(1 for d in won if invoices[d] > 1),
        "down_s": round(back - killed, 1),
        "recover_s": round(end - back, 1) if recovered is not None else None,
        "events_caught_up_s": round(max(0.0, caught - back), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--settle", type=float, default=5.0, help="steady seconds between faults")
    parser.add_argument("--faults", default=DEFAULT_FAULTS, help="comma-separated, in order")
    parser.add_argument("--workdir", type=Path, help="keep the topology's data and logs here")
    parser.add_argument(
        "--core-replicas", type=int, default=2, help="core instances behind Traefik (ADR 0177)"
    )
    parser.add_argument(
        "--plugin-replicas",
        type=int,
        default=2,
        help="processes per plugin behind Traefik (ADR 0219); a plugin fault kills the first",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=120, help="seconds for events to arrive at the end"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="plexica-chaos-"))
        )
        (work / "kafka").mkdir(parents=True, exist_ok=True)
        broker = KafkaBroker(work / "kafka")
        broker.start(timeout=120)
        stack.callback(broker.stop)
        topology = stack.enter_context(
            LocalTopology(
                work / "topology",
                plugins=["crm", "billing"],
                core_replicas=args.core_replicas,
                plugin_replicas=args.plugin_replicas,
                extra_env={
                    "PLEXICA_GATEWAY_RATE_LIMITS": LIMITS,
                    "PLEXICA_KAFKA_BROKERS": broker.bootstrap,
                },
            )
        )
        env = topology.cli_env()
        email = f"admin@{SLUG}.example"
        plexica(env, "tenant", "create", SLUG, "--name", "Chaos", "--admin-email", email)
        plexica(env, "plugin", "install", "crm", "--tenant", SLUG)
        plexica(env, "plugin", "install", "billing", "--tenant", SLUG)
        password = plexica(env, "user", "reset-password", email, "--tenant", SLUG)

        def sign_in() -> float:
            """A fresh token (they live 5 minutes; a run may be longer), in place for the load."""
            token = plexica(env, "token", "--tenant", SLUG, "--user", email, password=password)
            auth["Authorization"] = f"Bearer {token}"
            return time.monotonic()

        auth: dict[str, str] = {}
        signed_in = sign_in()
        public = env["PLEXICA_PUBLIC_URL"]
        load = Load(f"{public}/api/plugins/crm/v1", auth, args.rate)
        audit = Audit(broker.bootstrap)
        supervising = threading.Event()

        def supervise() -> None:
            while not supervising.is_set():
                topology.supervise()
                time.sleep(0.2)

        # The CLI's runs above left logging on a closed stream; the clients' reconnect chatter
        # while the broker is down is expected.
        logging.disable(logging.CRITICAL)
        auditor = threading.Thread(target=lambda: asyncio.run(audit.run()), daemon=True)
        auditor.start()
        audit.assigned.wait(120)
        threads = [
            threading.Thread(target=lambda: asyncio.run(load.run()), daemon=True),
            threading.Thread(target=supervise, daemon=True),
        ]
        for t in threads:
            t.start()
        faults: list[tuple[str, float, float]] = []
        pg_down: list[tuple[float, float]] = []
        began = time.monotonic()
        try:
            time.sleep(args.settle)
            for name in args.faults.split(","):
                if time.monotonic() - signed_in > 120:
                    with contextlib.suppress(RuntimeError):  # the old one serves a while yet
                        signed_in = sign_in()
                killed = time.monotonic()
                if name == "postgres":
                    back_when = kill_postgres(topology)
                elif name == "broker":
                    back_when = kill_broker(broker)
                elif name == "worker":
                    back_when = kill_worker(topology)
                else:
                    back_when = kill_service(topology, name)
                back = wait(back_when)
                if name == "postgres":
                    pg_down.append((killed, back))
                wait(lambda b=back: load.ok_streak_after(b) is not None, 120)  # type: ignore[misc]
                faults.append((name, killed, back))
                print(f"{name}: back after {back - killed:.1f} s", file=sys.stderr, flush=True)
                time.sleep(args.settle)
        except BaseException:
            supervising.set()  # the topology stops: nothing is to be restarted
            raise
        finally:
            load.stop.set()
            threads[0].join(60)
        ended = time.monotonic()
        with contextlib.suppress(RuntimeError):
            sign_in()
        # Settle: every committed event should reach the topic and Billing.
        wall_to_mono = time.time() - time.monotonic()
        events = asyncio.run(outbox(topology.database_url, wall_to_mono))
        with contextlib.suppress(TimeoutError):
            wait(lambda: all(e.id in audit.reads for e in events), args.drain_timeout)
        invoices_url = f"{public}/api/plugins/billing/v1/invoices"
        won = {e.deal for e in events if e.deal}

        seen: list[Counter[str]] = []

        def invoiced() -> bool:
            per = invoices_per_deal(invoices_url, auth)
            if per is not None:
                seen[:] = [per]
            return per is not None and won <= set(per)

        with contextlib.suppress(TimeoutError):
            wait(invoiced, args.drain_timeout)
        invoices = seen[0] if seen else Counter()
        audit.stop.set()
        auditor.join(30)
        supervising.set()
        # Counted once every answer is in: slow ones arrive after the recovery was seen.
        steady = [s for s in load.shots if began <= s.sent < (faults[0][1] if faults else ended)]
        rows: list[dict[str, object]] = [
            {
                "fault": "none (baseline)",
                "requests": len(steady),
                "by_status": dict(sorted(Counter(s.status for s in steady).items())),
            }
        ]
        bounds = [f[1] for f in faults[1:]] + [ended]
        rows += [
            fault_row(load, *fault, pg_down, events, audit, invoices, until)
            for fault, until in zip(faults, bounds, strict=True)
        ]
        acknowledged = {s.contact for s in load.shots if s.contact}
        contacts = {e.id for e in events if e.type == "crm.contact.created"}
        print(
            json.dumps(
                {
                    "rate": args.rate,
                    "requests": len(load.shots),
                    "statuses": dict(sorted(Counter(s.status for s in load.shots).items())),
                    "contacts_acknowledged": len(acknowledged),
                    "contact_events_written": len(contacts),
                    "events_written": len(events),
                    "events_lost": sum(1 for e in events if e.id not in audit.reads),
                    "events_read_twice": sum(
                        1 for e in events if len(audit.reads.get(e.id, [])) > 1
                    ),
                    "deals_won": len(won),
                    "invoices_missing": sum(1 for d in won if invoices[d] == 0),
                    "invoices_duplicated": sum(1 for d in won if invoices[d] > 1),
                    "faults": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
