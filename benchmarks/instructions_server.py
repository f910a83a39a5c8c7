"""Throughput kept under uvicorn, in CPU instructions per request: deterministic, whatever the
machine's load.

``middleware_overhead.py`` part (b) measures requests/s under wrk, which on this shared VM
moves by ±25 % between back-to-back runs of the same app: too much to read a 90 % bar from.
This script runs each variant's uvicorn server (uvloop, httptools: what ``pip install
scalewise`` brings) under ``valgrind --tool=callgrind``, sends it N and N + 1 000 requests over
one kept-alive connection from outside valgrind, and takes the difference: the instructions
the server process spends per request, from the socket read to the socket write (the
kernel's share is not counted, which makes every middleware's share look larger, not
smaller). "Kept" is bare / variant: the throughput a CPU-bound server keeps.

Background ticks run per wall-clock second and valgrind slows the server ~50×, so they would
be counted ~50× too often: the child stretches scalewise's sampling and lag probes to an hour,
as ``instructions.py`` does for interval roll-overs.

Run: ``PYTHONPATH=src python benchmarks/instructions_server.py [--json] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common as c
from instructions import BASE, CHILD_ENV, VARIANTS, callgrind_argv, collected

#: Both counts pass 1,000 requests, after which scalewise probes one request in 64 for
#: X-Request-Start when none has carried it (its steady state without a router header).
REQUESTS = (1100, 2100)
SERVER_ENV = {**CHILD_ENV, "SCALEWISE_METRICS_LOOP_LAG_INTERVAL": "1h"}
BAR_KEPT = 0.90


def child(variant: str, port: int) -> None:
    """Serve one variant on 127.0.0.1:``port`` until SIGINT (inside valgrind)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import uvicorn

    import _apps
    from scalewise.metrics import monitor

    monitor.SAMPLE_EVERY = 3600.0  # see the module docstring
    config = uvicorn.Config(
        getattr(_apps, variant)(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


def _wait_listening(port: int, proc: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.communicate()[1][-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not listen within the deadline")


def instructions(variant: str, requests: int) -> int:
    """Instructions the server process ran to start, serve ``requests`` and stop."""
    port = c.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            callgrind_argv(Path(tmp) / "cg.out", __file__, variant, str(port)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SERVER_ENV},
        )
        try:
            _wait_listening(port, proc, time.monotonic() + 300)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for _ in range(requests):  # bounded: exactly ``requests`` calls, loopback only
                conn.request("GET", "/items/42")
                answer = conn.getresponse()
                body = answer.read()
                if answer.status != 200 or body != b'{"id":42}':
                    raise RuntimeError(f"{variant} answered {answer.status} {body!r}")
            conn.close()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return collected(err)


def per_request(variant: str) -> float:
    low, high = (instructions(variant, n) for n in REQUESTS)
    return (high - low) / (REQUESTS[1] - REQUESTS[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="variants measured at once")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        per_req = dict(zip(VARIANTS, pool.map(per_request, VARIANTS), strict=True))
    rows = {}
    for v in VARIANTS:
        base = per_req[BASE[v.split("_")[0]]]
        rows[v] = {
            "instructions": per_req[v],
            "added": per_req[v] - base,
            "kept": base / per_req[v],
        }
    result = {
        "benchmark": "instructions_server",
        "requests": REQUESTS,
        "variants": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| variant | instructions per request | added over bare | kept |")
    print("|---|---:|---:|---:|")
    for v, row in rows.items():
        added = f"{row['added']:,.0f}" if v not in BASE.values() else "—"
        print(f"| {v} | {row['instructions']:,.0f} | {added} | {row['kept']:.1%} |")
    print()
    for v in ("starlette_scalewise", "fastapi_scalewise"):
        kept = rows[v]["kept"]
        print(f"[{'MET ' if kept >= BAR_KEPT else 'MISS'}] {v} keeps >= 90 % of bare: {kept:.1%}")


if __name__ == "__main__":
    main()
