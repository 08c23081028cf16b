"""bench/edge.py's reading of vegeta's output and its verdict against the goal of issue 20."""

from __future__ import annotations

import json
from dataclasses import replace

from bench.edge import Report, Run, knee, retry_after

# `vegeta report -type=json` of a run (v12.13.0): durations in nanoseconds, status 0 = no answer.
REPORT = {
    "latencies": {
        "total": 31_000_000_000,
        "mean": 3_100_000,
        "50th": 2_500_000,
        "90th": 5_000_000,
        "95th": 7_250_000,
        "99th": 21_000_000,
        "max": 48_000_000,
        "min": 900_000,
    },
    "bytes_in": {"total": 0, "mean": 0},
    "bytes_out": {"total": 0, "mean": 0},
    "earliest": "2026-12-07T03:50:00.000000001Z",
    "latest": "2026-12-07T03:50:19.998000001Z",
    "end": "2026-12-07T03:50:20.001000001Z",
    "duration": 19_998_000_000,
    "wait": 3_000_000,
    "requests": 10_000,
    "rate": 500.05,
    "throughput": 499.2,
    "success": 0.9988,
    "status_codes": {"200": 9988, "503": 10, "0": 2},
    "errors": ["503 Service Unavailable", "Get ...: connection refused"],
}


def test_report_reads_vegeta_json() -> None:
    report = Report.parse(json.dumps(REPORT))
    assert report.requests == 10_000
    assert (report.sent_per_s, report.ok_per_s) == (500.05, 499.2)
    assert (report.p50_ms, report.p95_ms, report.p99_ms, report.max_ms) == (2.5, 7.25, 21.0, 48.0)
    assert report.statuses == {200: 9988, 503: 10, 0: 2}
    assert report.failed == 12
    assert len(report.errors) == 2


def test_report_of_an_attack_with_no_status_codes() -> None:
    raw = REPORT | {"status_codes": None, "errors": None}
    report = Report.parse(json.dumps(raw))
    assert (report.statuses, report.errors, report.failed) == ({}, [], 0)


def test_retry_after_counts_the_non_2xx_results_that_carry_it() -> None:
    lines = [
        json.dumps({"code": 200, "headers": {"Content-Type": ["application/json"]}}),
        json.dumps({"code": 503, "headers": {"Retry-After": ["1"]}}),
        json.dumps({"code": 503, "headers": {}}),
        json.dumps({"code": 0, "headers": None}),
        "",
    ]
    assert retry_after(lines) == {503: 1}


def run(target: str, rate: int, **changes: object) -> Run:
    report = replace(
        Report.parse(json.dumps(REPORT | {"status_codes": {"200": 10_000}})),
        sent_per_s=float(rate),
        ok_per_s=float(rate),
    )
    report = replace(report, **changes)  # type: ignore[arg-type]
    cpu = {"plugin-crm": 1.0, "postgres": 0.2, "traefik": 0.3, "core": 0.5, "redis": 0.1}
    return Run(target, rate, 20, report, cpu, "1.0 1.0 1.0", "1.5 1.1 1.0")


def test_knee_is_the_first_rate_that_misses_the_goal() -> None:
    direct = {100: run("direct", 100), 250: run("direct", 250), 500: run("direct", 500)}
    edge = [run("traefik", 100), run("traefik", 250, p95_ms=31.0), run("traefik", 500)]
    assert knee(edge, direct) == "meets the goal up to 100/s; at 250/s: P95 31.0 ms"
    assert knee(list(direct.values()), direct) == "meets the goal at every rate run (up to 500/s)"


def test_a_run_misses_on_errors_falling_behind_cpu_and_overhead() -> None:
    direct = run("direct", 500)
    slow = run("traefik", 500, ok_per_s=300.0, statuses={200: 9000, 503: 1000}, p50_ms=4.0)
    assert slow.misses(direct) == ["300/s answered", "1000 errors", "P50 1.60x direct"]
    heavy = replace(run("traefik", 500), cpu_ms={"core": 2.0, "plugin-crm": 1.0})
    assert heavy.misses(direct) == ["CPU 3.00 ms"]
    assert knee([slow], {500: direct}).startswith("misses the goal at every rate; at 500/s")
