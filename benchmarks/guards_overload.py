"""Overload: a 50 ms handler behind a concurrency limit of 20, driven at 5× its capacity.

Capacity is 20 / 50 ms = 400 req/s; scalewise's load tester (open model, constant arrival rate)
sends 2 000 req/s for 20 s. Bars (issue 6): admitted requests keep p99 ≤ 2× their unloaded p99;
shed requests are answered in ≤ 10 ms p99; the app's RSS stays flat; no error other than 503.
For contrast the same load hits the same app with the guard switched off (limit 100 000).
Latency is taken from the intended send time. App on CPU 1, load generator on CPU 0.

    PYTHONPATH=src python benchmarks/guards_overload.py [--rate 2000] [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import _common as c
from scalewise.loadtest.runner import Runner, run
from scalewise.loadtest.scenario import plan_from_dict
from scalewise.metrics.histogram import Histogram

APP_CPU, CLIENT_CPU = 1, 0


def start_app(limit: int) -> tuple[Any, str]:
    port = c.free_port()
    argv = [sys.executable, "-m", "uvicorn", "guarded_app:app", "--app-dir",
            str(c.ROOT / "tests" / "apps"), "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "GUARDED_LIMIT": str(limit), "PYTHONPATH": str(c.SRC)}
    import subprocess
    import time

    proc = subprocess.Popen(["taskset", "-c", str(APP_CPU), *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if c.http_get(url + "/health")[0] == 200:
                return proc, url
        except OSError:
            time.sleep(0.05)
    c.stop_pid(proc)
    raise RuntimeError("guarded app did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def drive(url: str, rate: float, seconds: float, pid: int) -> dict[str, Any]:
    """Open-model load; latency per status from the intended send time; app RSS per second."""
    by_status: dict[int, Histogram] = {}
    errors: dict[str, int] = {}
    rss: list[float] = []

    async def split(vu: Any) -> None:
        r = await vu.get("/work", name="work")
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
            return
        by_status.setdefault(r.status, Histogram()).record(r.latency)

    raw = {"target": url, "requests": [{"url": "/work"}],
           "scenarios": {"load": {"executor": "constant-arrival-rate", "rate": rate,
                                  "duration": seconds, "preAllocatedVUs": 400, "maxVUs": 4000,
                                  "exec": "default"}}}  # fmt: skip
    plan = plan_from_dict(raw, source="overload")
    executors = tuple(replace(ex, exec="split") for ex in plan.executors)
    plan = replace(plan, flows={"split": split}, executors=executors)
    runner = Runner(plan, on_interval=lambda p: rss.append(rss_mb(pid)))
    result = run(runner)
    out: dict[str, Any] = {
        "sent": result.totals.requests, "dropped": result.totals.dropped, "errors": errors,
        "statuses": {s: h.count for s, h in sorted(by_status.items())},
        "generator": result.meta["generator"], "rss_mb": [round(r, 1) for r in rss],
    }  # fmt: skip
    for status, hist in by_status.items():
        out[f"p50_ms_{status}"] = round(hist.quantile(0.5) * 1000, 2)
        out[f"p99_ms_{status}"] = round(hist.quantile(0.99) * 1000, 2)
    return out


def measure(rate: float, seconds: float) -> dict[str, Any]:
    c.pin(CLIENT_CPU)
    results: dict[str, Any] = {}
    for label, limit in (("guarded", 20), ("unguarded", 100_000)):
        proc, url = start_app(limit)
        try:
            results[f"{label}_unloaded"] = drive(url, 100, 10, proc.pid)
            results[f"{label}_overload"] = drive(url, rate, seconds, proc.pid)
        finally:
            c.stop_pid(proc)
    g0, g1 = results["guarded_unloaded"], results["guarded_overload"]
    rss = g1["rss_mb"][2:] or g1["rss_mb"]
    results["bars"] = {
        "admitted_p99_ratio": round(g1.get("p99_ms_200", float("inf")) / g0["p99_ms_200"], 2),
        "shed_p99_ms": g1.get("p99_ms_503"),
        "rss_growth_mb": round(rss[-1] - rss[0], 1) if rss else None,
        "other_errors": {k: v for k, v in g1["statuses"].items() if k not in (200, 503)}
        | g1["errors"],
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.rate, args.seconds)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    for key in ("guarded_unloaded", "guarded_overload", "unguarded_unloaded", "unguarded_overload"):
        r = {k: v for k, v in results[key].items() if k not in ("rss_mb", "generator")}
        print(f"{key:20} {r}")
    b = results["bars"]
    print(f"admitted p99 / unloaded p99 = {b['admitted_p99_ratio']}× (bar ≤ 2×)")
    print(f"shed p99 = {b['shed_p99_ms']} ms (bar ≤ 10 ms)")
    print(
        f"app RSS growth after warm-up = {b['rss_growth_mb']} MB; other errors: {b['other_errors']}"
    )


if __name__ == "__main__":
    main()
