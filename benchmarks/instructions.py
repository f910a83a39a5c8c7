"""Middleware cost in CPU instructions (callgrind): deterministic, whatever the machine's load.

Wall-clock and CPU-time figures on a shared virtual machine move by ±5 µs between runs; the
number of instructions a call executes does not. This script runs each variant of
``_apps.py`` under ``valgrind --tool=callgrind`` twice (N and N + 2 000 calls), so start-up
cancels out, and prints instructions per call, the instructions each middleware adds, and
the ratios. Needs valgrind (Debian package). ~10 minutes.

Run: ``PYTHONPATH=src python benchmarks/instructions.py [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = (
    "starlette_bare",
    "starlette_floor",
    "starlette_scalewise",
    "starlette_exporter",
    "fastapi_bare",
    "fastapi_scalewise",
    "fastapi_instrumentator",
)
BASE = {"starlette": "starlette_bare", "fastapi": "fastapi_bare"}
CALLS = (500, 2500)
#: Calls before counting: caches warm, and scalewise in its steady state for requests without
#: X-Request-Start (it probes one in 64 for the header after 1,000 without it).
WARMUP = 1100
#: Under valgrind a request takes ~50× its real time, so 10 s windows would close every few
#: hundred requests instead of every ~10⁵ and their roll-over, amortised to nothing in real
#: time, would land at random inside the count (±1.5 k instructions a call between runs). An
#: hour-long interval keeps roll-overs out; a fixed hash seed keeps dict layouts the same.
CHILD_ENV = {
    "SCALEWISE_MULTIPROCESS_DIR": "off",
    "SCALEWISE_INTERVAL": "1h",
    "SCALEWISE_HISTORY": "1h",
    "PYTHONHASHSEED": "0",
}


def child(variant: str, calls: int) -> None:
    """Run ``calls`` in-process requests against one variant (inside valgrind)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import _apps

    app = getattr(_apps, variant)()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/items/42",
        "raw_path": b"/items/42",
        "root_path": "",
        "headers": [(b"host", b"x"), (b"user-agent", b"wrk")],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    async def main() -> None:
        for _ in range(WARMUP):  # warm caches; steady state (see WARMUP)
            await app(dict(scope), receive, send)
        _quiet_background(app)
        for _ in range(calls):
            await app(dict(scope), receive, send)

    asyncio.run(main())


def _quiet_background(app: object) -> None:
    """Stop scalewise's once-a-second background task: under valgrind a run lasts long
    enough for it to fire a varying number of times, which would blur the count."""
    from scalewise import ScalewiseMiddleware

    inner = getattr(app, "middleware_stack", None)
    while inner is not None and not isinstance(inner, ScalewiseMiddleware):
        inner = getattr(inner, "app", None)
    if inner is not None:
        inner.monitor.stop()
        inner.monitor.ensure_task = lambda: None  # type: ignore[method-assign]


def callgrind_argv(out: Path, script: str, *child_args: str) -> list[str]:
    """``script --child ...`` under callgrind, its count written to ``out``."""
    return [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        script,
        "--child",
        *child_args,
    ]


def collected(stderr: str) -> int:
    """The instruction count callgrind reports when its process ends."""
    match = re.search(r"Collected : (\d+)", stderr)
    if match is None:
        raise RuntimeError(stderr[-2000:])
    return int(match.group(1))


def instructions(variant: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            callgrind_argv(Path(tmp) / "cg.out", __file__, variant, str(calls)),
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env={**os.environ, **CHILD_ENV},
        )
    return collected(run.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    per_call = {}
    for variant in VARIANTS:
        low, high = (instructions(variant, n) for n in CALLS)
        per_call[variant] = (high - low) / (CALLS[1] - CALLS[0])
    added = {
        v: per_call[v] - per_call[BASE[v.split("_")[0]]] for v in VARIANTS if v not in BASE.values()
    }
    ratios = {
        "starlette_exporter / scalewise": added["starlette_exporter"]
        / added["starlette_scalewise"],
        "instrumentator / scalewise (FastAPI)": added["fastapi_instrumentator"]
        / added["fastapi_scalewise"],
        "instrumentator (FastAPI) / scalewise (Starlette)": added["fastapi_instrumentator"]
        / added["starlette_scalewise"],
    }
    result = {"instructions_per_call": per_call, "added": added, "ratios": ratios}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| variant | instructions per call | added over bare |")
    print("|---|---:|---:|")
    for v in VARIANTS:
        extra = f"{added[v]:,.0f}" if v in added else "—"
        print(f"| {v} | {per_call[v]:,.0f} | {extra} |")
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.1f}x  [{'MET ' if value >= 10 else 'MISS'}] >= 10x")


if __name__ == "__main__":
    main()
