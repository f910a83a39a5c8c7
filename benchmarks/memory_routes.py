"""Does a flood of distinct URLs grow memory or label cardinality?

10^6 in-process requests over 10^5 distinct raw paths go through a Starlette app with two
templated routes and a raw ASGI fallback (``app.router.default``) that answers every other
path without a router, so scalewise must fall back to path normalisation for those:

=====  =============================  ============  =========================================
share  raw path                       answered by   what scalewise can label it
=====  =============================  ============  =========================================
30 %   ``/items/<int>``               route         template ``/items/{id:int}``
10 %   ``/users/<int>/orders``        route         template ``/users/{uid:int}/orders``
30 %   ``/pages/<word>/<word>``       fallback 200  nothing collapses: the route cap must hold
10 %   ``/legacy/<int>/<uuid hex>``   fallback 200  normalised to ``/legacy/{id}/{id}``
20 %   ``/nope/<word>/<word>``        fallback 404  ``__unmatched__``
=====  =============================  ============  =========================================

5 % of the requests are POSTs (405 on the templated routes), so series, which are
(method, route, status class), can outnumber route labels.

The peers and the control get 3 × 10^5 requests by default (``--peer-requests 0`` for the
full 10^6, which takes ~3 minutes on 2 cores): they are 2–3× slower per request, and their
label sets stop growing after the first few thousand requests (see the RSS curve).

Each variant runs in its own process (clean RSS), two at a time, one per CPU. RSS (psutil) is
read after a warm-up and every 10 % of the traffic; label counts come from the middleware's
recorder and from its ``/metrics`` text (scalewise) or the Prometheus registry (peers).
``scalewise_ring`` is scalewise with ``interval=0.25, history=22.5``: the same 90 rolling-window
slots as the defaults (10 s × 90), filled within the run, so the steady state of the window
ring is included (a default run is shorter than 900 s and fills only a few slots).

Run: ``PYTHONPATH=src python benchmarks/memory_routes.py [--json]``
"""

from __future__ import annotations

import argparse
import array
import concurrent.futures
import gc
import json
import queue
import random
import string
import subprocess
import sys
import time
from typing import Any

import _common as c

BARS = {"rss_mb": 20.0}
VARIANTS = {
    "bare": "Starlette, no middleware (control)",
    "scalewise": "Starlette + scalewise (defaults)",
    "scalewise_ring": "Starlette + scalewise (90-slot ring filled)",
    "starlette_exporter": "Starlette + starlette-exporter (defaults)",
    "instrumentator": "Starlette + instrumentator (defaults)",
}
PEERS = ("starlette_exporter", "instrumentator")
POST_SHARE = 0.05
WARMUP_PATHS = ("/items/1", "/users/1/orders", "/pages/a/b", "/legacy/1/2", "/nope/x/y")
WARMUP_EACH = 200
MIX = (("items", 0.30), ("users", 0.10), ("pages", 0.30), ("legacy", 0.10), ("nope", 0.20))


# -- traffic ---------------------------------------------------------------------------------


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10)))


def path_pool(n: int, seed: int) -> list[str]:
    """``n`` distinct raw paths in the mix above."""
    rng = random.Random(seed)
    pool: set[str] = set()
    for kind, share in MIX:
        target = len(pool) + int(n * share)
        while len(pool) < target:
            if kind == "items":
                path = f"/items/{rng.randrange(10**9)}"
            elif kind == "users":
                path = f"/users/{rng.randrange(10**9)}/orders"
            elif kind == "legacy":
                path = f"/legacy/{rng.randrange(10**6)}/{rng.getrandbits(128):032x}"
            else:
                path = f"/{kind}/{_word(rng)}/{_word(rng)}"
            pool.add(path)
    paths = sorted(pool)
    rng.shuffle(paths)
    return paths


# -- the app ---------------------------------------------------------------------------------


def build(variant: str) -> tuple[Any, Any]:
    """(ASGI app, object to ask for labels)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("item")

    async def orders(request: Any) -> PlainTextResponse:
        return PlainTextResponse("orders")

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        """A plain ASGI app, no router: 404 under /nope/, 200 elsewhere."""
        status = 404 if scope["path"].startswith("/nope/") else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    app = Starlette(
        routes=[Route("/items/{id:int}", item), Route("/users/{uid:int}/orders", orders)]
    )
    app.router.default = fallback
    probe: Any = None
    if variant.startswith("scalewise"):
        from scalewise import ScalewiseMiddleware

        extra = {"interval": 0.25, "history": 22.5} if variant == "scalewise_ring" else {}
        app.add_middleware(ScalewiseMiddleware, multiprocess_dir=None, **extra)
    elif variant == "starlette_exporter":
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware)
    elif variant == "instrumentator":
        from prometheus_client import CollectorRegistry
        from prometheus_fastapi_instrumentator import Instrumentator

        probe = Instrumentator(registry=CollectorRegistry())
        probe.instrument(app)
    return app, probe


# -- one variant, in a child process -----------------------------------------------------------


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _labels(variant: str, app: Any, probe: Any) -> dict[str, Any]:
    """Distinct route labels and request series the instrumentation now holds."""
    if variant.startswith("scalewise"):
        import asyncio

        from scalewise import ScalewiseMiddleware

        mw = c.find_instance(app, ScalewiseMiddleware)
        rec = mw.recorder
        started = time.perf_counter()
        body = asyncio.run(c.call(app, c.http_scope("/metrics"))).body.decode()
        render = time.perf_counter() - started
        lines = [x for x in body.splitlines() if x.startswith("scalewise_http_requests_total{")]
        routes = {x.split('route="', 1)[1].split('"', 1)[0] for x in lines}
        return {
            "series": len(rec.table.requests),
            "route_labels": len(routes),
            "recorder_routes": len(rec.routes()),
            "cap": rec.options.max_routes,
            "series_cap": rec.options.max_series,
            "metrics_series": len(lines),
            "overflowed_requests": int(rec.table.counters["route_overflow"]),
            "metrics_bytes": len(body),
            "metrics_render_ms": render * 1e3,
            "window_slots": len(rec.windows.snapshots(0.0)),
            "example_labels": sorted(routes)[:8],
        }
    if variant in PEERS:
        from prometheus_client import REGISTRY

        registry = probe.registry if probe is not None else REGISTRY
        name = (
            "http_requests_total" if variant == "instrumentator" else ("starlette_requests_total")
        )
        key = "handler" if variant == "instrumentator" else "path"
        samples = [s for fam in registry.collect() for s in fam.samples if s.name == name]
        routes = {s.labels.get(key) for s in samples}
        return {
            "series": len(samples),
            "route_labels": len(routes),
            "counted": int(sum(s.value for s in samples)),
            "example_labels": sorted(str(r) for r in routes)[:8],
        }
    return {}


async def _drive(
    app: Any,
    paths: list[str],
    order: array.array,
    posts: array.array,
    rss: list[tuple[int, int]],
    every: int,
) -> None:
    base = c.http_scope("/")
    recv, send = c.receive, c.discard
    for done, (index, post) in enumerate(zip(order, posts, strict=True), 1):
        scope = base.copy()
        path = paths[index]
        scope["path"] = path
        scope["raw_path"] = path.encode()
        if post:
            scope["method"] = "POST"
        await app(scope, recv, send)
        if done % every == 0:
            rss.append((done, _rss()))


def child(variant: str, requests: int, distinct: int, seed: int) -> dict[str, Any]:
    import asyncio

    paths = path_pool(distinct, seed)
    rng = random.Random(seed + 1)
    order = array.array("i", (rng.randrange(distinct) for _ in range(requests)))
    posts = array.array("b", (rng.random() < POST_SHARE for _ in range(requests)))
    app, probe = build(variant)

    async def warm() -> None:
        for path in WARMUP_PATHS:
            for _ in range(WARMUP_EACH):
                await c.call(app, c.http_scope(path))

    gc.collect()
    asyncio.run(warm())
    gc.collect()
    baseline = _rss()
    curve: list[tuple[int, int]] = [(0, baseline)]
    started = time.process_time()
    asyncio.run(_drive(app, paths, order, posts, curve, max(1, requests // 10)))
    cpu = time.process_time() - started
    gc.collect()
    final = _rss()
    half = next((r for n, r in curve if n >= requests // 2), final)
    return {
        "variant": variant,
        "requests": requests,
        "distinct_paths": distinct,
        "sent": requests + len(WARMUP_PATHS) * WARMUP_EACH,
        "rss_baseline_mb": baseline / 2**20,
        "rss_final_mb": final / 2**20,
        "rss_growth_mb": (final - baseline) / 2**20,
        "rss_peak_growth_mb": (max(r for _, r in curve) - baseline) / 2**20,
        "rss_growth_second_half_mb": (final - half) / 2**20,
        "rss_curve_mb": [(n, round(r / 2**20, 2)) for n, r in curve],
        "us_per_request": cpu / requests * 1e6,
        **_labels(variant, app, probe),
    }


# -- the parent --------------------------------------------------------------------------------


def _run_child(variant: str, requests: int, args: argparse.Namespace, cpu: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--requests",
        str(requests),
        "--distinct",
        str(args.distinct),
        "--seed",
        str(args.seed),
    ]
    command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def _bars(results: dict[str, Any]) -> list[dict[str, Any]]:
    bars = []
    for name in ("scalewise", "scalewise_ring"):
        r = results.get(name)
        if not r:
            continue
        bars.append(
            {
                "bar": f"{name}: RSS growth <= {BARS['rss_mb']:g} MB",
                "value": round(r["rss_growth_mb"], 1),
                "met": r["rss_growth_mb"] <= BARS["rss_mb"],
            }
        )
        kept = r["recorder_routes"]
        bars.append(
            {
                "bar": f"{name}: route labels kept <= cap ({r['cap']}), plus one overflow label",
                "value": f"{kept} kept, {r['route_labels']} labels",
                "met": kept <= r["cap"] and r["route_labels"] <= r["cap"] + 1,
            }
        )
        bars.append(
            {
                "bar": f"{name}: request series <= series cap ({r['series_cap']})",
                "value": r["series"],
                "met": r["series"] <= r["series_cap"],
            }
        )
    return bars


def _render(result: dict[str, Any]) -> str:
    out = [c.machine_line(result["machine"]), ""]
    rows = []
    for name, r in result["variants"].items():
        rows.append(
            [
                VARIANTS[name],
                f"{r['requests']:,}",
                c.fmt(r["rss_growth_mb"], 1),
                c.fmt(r["rss_peak_growth_mb"], 1),
                c.fmt(r["rss_growth_second_half_mb"], 1),
                r.get("route_labels", "—"),
                r.get("series", "—"),
                c.fmt(r["us_per_request"], 1),
            ]
        )
    out.append(f"{result['config']['distinct']:,} distinct raw paths; RSS in MB after a warm-up")
    out.append(
        c.table(
            [
                "variant",
                "requests",
                "RSS growth",
                "peak",
                "2nd half",
                "route labels",
                "series",
                "CPU µs/req",
            ],
            rows,
        )
    )
    out.append("")
    for name, r in result["variants"].items():
        if "example_labels" in r:
            extra = ""
            if "overflowed_requests" in r:
                extra = (
                    f"; {r['overflowed_requests']:,} requests overflowed to __other__; "
                    f"/metrics {r['metrics_bytes']:,} bytes in {r['metrics_render_ms']:.1f}"
                    f" ms; {r['window_slots']} closed window slots"
                )
            elif "counted" in r:
                extra = f"; {r['counted']:,} of {r['sent']:,} requests counted"
            out.append(f"{name}: labels e.g. {r['example_labels']}{extra}")
    out.append("")
    out.extend(c.bar_line(b["bar"], b["met"], str(b["value"])) for b in result["bars"])
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument(
        "--peer-requests",
        type=int,
        default=300_000,
        help="requests for the peers and the control (2-3x slower per request;"
        " same paths); 0: as many as --requests",
    )
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    # Longest first, so the two CPUs finish together.
    parser.add_argument(
        "--variants", default="instrumentator,starlette_exporter,scalewise,scalewise_ring,bare"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.requests, args.distinct, args.seed)))
        return
    started = time.monotonic()
    chosen = [v for v in args.variants.split(",") if v]
    result: dict[str, Any] = {
        "benchmark": "memory_routes",
        "machine": c.machine(),
        "config": vars(args),
    }
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in chosen:
        todo.put(name)
    done: dict[str, Any] = {}

    def worker(cpu: int) -> None:  # one child at a time per CPU
        while True:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            n = (
                args.requests
                if name.startswith("scalewise")
                else (args.peer_requests or args.requests)
            )
            done[name] = _run_child(name, n, args, cpu)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(worker, cpu) for cpu in (0, 1)]:
            future.result()
    result["variants"] = {name: done[name] for name in chosen}
    result["bars"] = _bars(result["variants"])
    result["seconds"] = round(time.monotonic() - started, 1)
    c.emit(result, args.json, _render)


if __name__ == "__main__":
    main()
