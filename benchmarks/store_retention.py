"""A year of 10 s interval snapshots of one instance through the SQLite store and its retention.

What it answers: does a year of history fit on a small disk, and what does keeping it cost?
One instance, one worker, one 10 s snapshot per interval: 3 153 600 snapshots a year. Each
simulated day is written in hourly batches, then ``apply_retention`` runs with the default
:class:`~scalewise.store.base.Retention` (10 s kept 2 days, 1 min 14 days, 10 min 400 days),
as a daemon would. At the end it prints the rows kept per resolution, the file size, the
size the same year would take without retention (bytes per raw row × rows), the time spent
writing and in retention, and checks that request and error totals survived exactly.

Traffic: ``--per-day`` requests a day (default 1 000, the seeds' Starter tier "~1,000
requests/day") with a day/night cycle, three routes, lognormal latencies, ~1 % errors.
Request counts per interval are Poisson (numpy) for ``--patterns`` distinct days, reused
round-robin. Retention's cost grows with traffic (bigger histograms to merge): at 10 000
requests a day (``--per-day 10000``) the year takes about twice as long.

Generating cheaply: 3 million snapshots cannot each be built and encoded in Python within
the time budget, so rows come from a pool of pre-encoded templates (the store's own
``snapshot_row`` encoder, ``--variants`` per request count) with their start time set; they
are inserted with the store's own upsert. Retention then decodes, merges and re-encodes every
row for real. The public ``write_snapshots`` path is timed separately on one day of
snapshots, each encoded on its own.

Run: ``PYTHONPATH=src python benchmarks/store_retention.py [--json] [--days 365]``
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import _common as c
from scalewise.metrics.histogram import Histogram, merge_all
from scalewise.metrics.windows import IntervalSnapshot, RouteSnapshot
from scalewise.store.base import Retention
from scalewise.store.downsample import snapshot_row
from scalewise.store.sqlite import _UPSERT_SNAPSHOT, RAW, SQLiteStore

DAY = 86400.0
INTERVAL = 10.0
PER_DAY = int(DAY / INTERVAL)
START = 1_700_006_400.0  # a midnight (UTC), so days and buckets line up
INSTANCE = "web-1"
ROUTES = (("GET /items/{id}", 0.6, 0.04), ("GET /search", 0.3, 0.25), ("POST /orders", 0.1, 0.6))
BARS = {"runtime_s": 120.0, "file_mb": 100.0}


def day_patterns(per_day: float, patterns: int, seed: int) -> list[np.ndarray]:
    """Requests per interval for ``patterns`` days: Poisson around a day/night cycle."""
    rng = np.random.default_rng(seed)
    hours = np.arange(PER_DAY) * INTERVAL / 3600.0
    cycle = 1.0 + 0.8 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)  # peak mid-afternoon
    return [rng.poisson(per_day / PER_DAY * cycle) for _ in range(patterns)]


def _hist(rng: random.Random, n: int, median: float) -> Histogram:
    h = Histogram()
    for _ in range(n):
        h.record(rng.lognormvariate(math.log(median), 0.7))
    return h


def template(rng: random.Random, requests: int) -> IntervalSnapshot:
    """One plausible 10 s interval with ``requests`` requests over the three routes."""
    routes: dict[str, RouteSnapshot] = {}
    left = requests
    for i, (name, share, median) in enumerate(ROUTES):
        n = left if i == len(ROUTES) - 1 else min(left, round(requests * share))
        left -= n
        if n:
            errors = sum(rng.random() < 0.01 for _ in range(n))
            routes[name] = RouteSnapshot(n, errors, 0, _hist(rng, n, median).freeze())
    latency = merge_all(r.latency for r in routes.values())
    return IntervalSnapshot(
        start=0.0,
        seconds=INTERVAL,
        requests=requests,
        errors=sum(r.errors for r in routes.values()),
        inflight_peak=min(requests, rng.randint(1, 4)),
        busy_seconds=min(INTERVAL, latency.sum),
        latency=latency.freeze(),
        ttfb=_hist(rng, requests, 0.01).freeze(),
        routes=routes,
        gauges={
            "cpu_percent": round(2 + 3 * requests + rng.random(), 2),
            "rss_bytes": float(180_000_000 + rng.randint(0, 20_000_000)),
            "open_fds": float(rng.randint(20, 40)),
        },
    )


def build_pool(counts: set[int], variants: int, seed: int) -> dict[int, list[IntervalSnapshot]]:
    rng = random.Random(seed)
    return {n: [template(rng, n) for _ in range(variants)] for n in sorted(counts)}


def write_day(
    store: SQLiteStore, day: int, pattern: np.ndarray, tails: dict[int, list[tuple[Any, ...]]]
) -> tuple[int, int]:
    """Insert one day of pre-encoded rows in hourly batches; returns (requests, errors)."""
    base = START + day * DAY
    rows = []
    requests = errors = 0
    for i, n in enumerate(pattern.tolist()):
        choices = tails[n]
        tail = choices[(day + i) % len(choices)]
        rows.append((INSTANCE, 0, base + i * INTERVAL, RAW, *tail))
        requests += n
        errors += tail[2]  # snapshot_row order after start: seconds, requests, errors, ...
    for hour in range(24):
        with store._transaction() as cur:
            cur.executemany(_UPSERT_SNAPSHOT, rows[hour * 360 : (hour + 1) * 360])
    return requests, errors


def file_bytes(store: SQLiteStore) -> int:
    with store._transaction(write=False) as cur:
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(os.path.getsize(p) for p in (store.path, store.path + "-wal") if os.path.exists(p))


def sums(store: SQLiteStore) -> tuple[int, int]:
    with store._transaction(write=False) as cur:
        cur.execute("SELECT SUM(requests), SUM(errors) FROM snapshots")
        requests, errors = cur.fetchone()
    return int(requests or 0), int(errors or 0)


def public_write_cost(pool: dict[int, list[IntervalSnapshot]], pattern: np.ndarray) -> float:
    """µs per snapshot through ``write_snapshots`` (each snapshot encoded on its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "write.db")
        snaps = []
        for i, n in enumerate(pattern.tolist()):
            t = pool[n][i % len(pool[n])]
            snaps.append(replace(t, start=START + i * INTERVAL))
        started = time.perf_counter()
        for hour in range(24):
            store.write_snapshots(INSTANCE, snaps[hour * 360 : (hour + 1) * 360])
        elapsed = time.perf_counter() - started
        store.close()
    return elapsed / len(snaps) * 1e6


def run(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    patterns = day_patterns(args.per_day, args.patterns, args.seed)
    counts = {int(n) for p in patterns for n in np.unique(p)}
    pool = build_pool(counts, args.variants, args.seed)
    tails = {n: [snapshot_row(INSTANCE, s, RAW)[4:] for s in snaps] for n, snaps in pool.items()}
    store = SQLiteStore(path)
    write_s = retention_s = 0.0
    written = [0, 0]
    per_raw_row = 0.0
    merged: dict[str, int] = {}
    for day in range(args.days):
        t0 = time.perf_counter()
        requests, errors = write_day(store, day, patterns[day % len(patterns)], tails)
        t1 = time.perf_counter()
        written[0] += requests
        written[1] += errors
        if day == 0:
            per_raw_row = file_bytes(store) / PER_DAY
        counts_now = store.apply_retention(START + (day + 1) * DAY, Retention())
        t2 = time.perf_counter()
        for key, value in counts_now.items():
            merged[key] = merged.get(key, 0) + value
        write_s += t1 - t0
        retention_s += t2 - t1
        if args.progress and (day + 1) % 30 == 0:
            print(f"  day {day + 1}: {t2 - t0:.2f} s/day", flush=True)
    rows = store.count_snapshots()
    size = file_bytes(store)
    kept = sums(store)
    store.close()
    return {
        "snapshots_written": args.days * PER_DAY,
        "rows_kept": {f"{int(res)}s" if res else "raw": n for res, n in sorted(rows.items())},
        "rows_total": sum(rows.values()),
        "file_mb": round(size / 1e6, 2),
        "without_retention_mb": round(per_raw_row * args.days * PER_DAY / 1e6, 1),
        "bytes_per_raw_row": round(per_raw_row, 1),
        "write_s": round(write_s, 1),
        "retention_s": round(retention_s, 1),
        "retention_us_per_snapshot": round(retention_s / (args.days * PER_DAY) * 1e6, 1),
        "retention_counts": merged,
        "totals_exact": kept == (written[0], written[1]),
        "requests": {"written": written[0], "kept": kept[0]},
        "errors": {"written": written[1], "kept": kept[1]},
        "public_write_us_per_snapshot": round(public_write_cost(pool, patterns[0]), 1),
    }


def _render(result: dict[str, Any]) -> str:
    r = result["result"]
    rows = [(res, f"{n:,}") for res, n in r["rows_kept"].items()]
    rows.append(("total", f"{r['rows_total']:,}"))
    return "\n".join(
        [
            c.machine_line(result["machine"]),
            f"{r['snapshots_written']:,} snapshots of 10 s ({result['config']['days']} days, "
            f"{result['config']['per_day']:,} requests a day) through retention:",
            "",
            c.table(("resolution", "rows kept"), rows),
            "",
            f"file: {r['file_mb']} MB (without retention: ~{r['without_retention_mb']} MB, "
            f"{r['bytes_per_raw_row']} bytes per 10 s row)",
            f"time: writing {r['write_s']} s (pre-encoded rows), retention {r['retention_s']} s "
            f"({r['retention_us_per_snapshot']} µs per snapshot merged)",
            f"write_snapshots: {r['public_write_us_per_snapshot']} µs per snapshot encoded",
            f"totals exact: {r['totals_exact']} (requests {r['requests']['kept']:,} of "
            f"{r['requests']['written']:,}, errors {r['errors']['kept']:,} of "
            f"{r['errors']['written']:,})",
            "",
            *(c.bar_line(k, ok, d) for k, (ok, d) in result["bars"].items()),
            f"total runtime {result['seconds']} s",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=1000, help="requests per day")
    parser.add_argument("--patterns", type=int, default=7, help="distinct days of traffic")
    parser.add_argument("--variants", type=int, default=16, help="templates per request count")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", action="store_true", help="print a line every 30 days")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to")
    args = parser.parse_args()
    c.pin(args.cpu)
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "store_retention",
        "machine": c.machine(),
        "config": vars(args),
    }
    with tempfile.TemporaryDirectory() as tmp:
        result["result"] = run(args, Path(tmp) / "scalewise.db")
    result["seconds"] = round(time.monotonic() - started, 1)
    r = result["result"]
    result["bars"] = {
        "runtime": (result["seconds"] <= BARS["runtime_s"], f"{result['seconds']} s ≤ 120 s"),
        "file size": (r["file_mb"] <= BARS["file_mb"], f"{r['file_mb']} MB ≤ 100 MB"),
        "totals": (r["totals_exact"], "requests and errors survive downsampling exactly"),
    }
    c.emit(result, args.json, _render)


if __name__ == "__main__":
    main()
