"""What does ScalewiseMiddleware cost per request, next to its peers, in one run?

(a) In-process: each variant's ASGI app is called directly in a loop (hand-built scope,
    ``receive`` and ``send``; no network, no test client) inside one running event loop.
    Variants are interleaved round by round; the figure is the median µs per call over the
    rounds, and "added" is the median over rounds of (variant − its bare app) in that round.
(b) Under uvicorn on 127.0.0.1: one worker per variant pinned to one core, ``wrk`` pinned to
    the other; requests/s and the share of the bare app's throughput kept.

Run: ``PYTHONPATH=src python benchmarks/middleware_overhead.py [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import Any

import _common as c
from _apps import ITEM_PATH, VARIANTS, FloorMiddleware
from scalewise import ScalewiseMiddleware

BARS = {"added_us": 3.0, "peer_ratio": 10.0, "kept": 0.90}
SCALEWISE = "starlette_scalewise"
PEERS = ("starlette_exporter", "fastapi_instrumentator")


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    """The harness alone: scope copy, call and await, no app work."""


async def _batch(app: Any, scope: dict[str, Any], n: int) -> float:
    """CPU seconds per call over ``n`` back-to-back calls.

    Process CPU time, not wall time: on a shared core, slices given to other processes would
    otherwise land on whichever variant happened to be running.
    """
    copy, recv, send = scope.copy, c.receive, c.discard
    start = time.process_time()
    for _ in range(n):
        await app(copy(), recv, send)
    return (time.process_time() - start) / n


async def _inprocess(args: argparse.Namespace) -> dict[str, Any]:
    scope = c.http_scope(ITEM_PATH)
    apps: dict[str, Any] = {name: factory() for name, (_, factory, _) in VARIANTS.items()}
    apps["harness"] = _noop_app
    sizes: dict[str, int] = {}
    for name, app in apps.items():
        if name != "harness":
            answer = await c.call(app, scope)
            if answer.status != 200 or answer.body != b'{"id":42}':
                raise RuntimeError(f"{name} answered {answer.status} {answer.body!r}")
        await _batch(app, scope, args.warmup)
        probe = await _batch(app, scope, 1000)
        sizes[name] = max(200, min(100_000, int(args.batch_seconds / probe)))
    names = list(apps)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    calls: dict[str, int] = dict.fromkeys(names, 0)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            per_call[name].append(await _batch(apps[name], scope, sizes[name]) * 1e6)
            calls[name] += sizes[name]
    return _summarise(apps, per_call, sizes, calls, args)


def _counted(app: Any) -> int | None:
    """Requests the in-app instrumentation saw (a check that it really measured)."""
    mw = c.find_instance(app, ScalewiseMiddleware)
    if mw is not None:
        return sum(s.duration.count for s in mw.recorder.table.requests.values())
    floor = c.find_instance(app, FloorMiddleware)
    return floor.count if floor is not None else None


def _summarise(
    apps: dict[str, Any],
    per_call: dict[str, list[float]],
    sizes: dict[str, int],
    calls: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    variants: dict[str, Any] = {}
    for name, values in per_call.items():
        label, base = (
            (VARIANTS[name][0], VARIANTS[name][2])
            if name in VARIANTS
            else ("harness only (no-op ASGI app)", None)
        )
        entry: dict[str, Any] = {
            "label": label,
            "us_per_call": c.median(values),
            "best": min(values),
            "worst": max(values),
            "calls_per_round": sizes[name],
            "base": base,
        }
        if base is not None and base != name:
            paired = [v - b for v, b in zip(values, per_call[base], strict=True)]
            entry["added_us"] = c.median(paired)
            entry["added_best_us"] = min(values) - min(per_call[base])
        counted = _counted(apps[name]) if name in VARIANTS else None
        if counted is not None:
            entry["counted"] = counted
            entry["sent"] = calls[name] + args.warmup + 1000 + 1
        entry["rounds"] = [round(v, 3) for v in values]
        variants[name] = entry
    ratios = {}
    for key, estimate in (("median", "added_us"), ("best", "added_best_us")):
        sw = variants[SCALEWISE][estimate]
        fsw = variants["fastapi_scalewise"][estimate]
        exporter = variants["starlette_exporter"][estimate]
        instrumentator = variants["fastapi_instrumentator"][estimate]
        ratios[key] = {
            "starlette-exporter / scalewise": c.ratio(exporter, sw),
            "instrumentator / scalewise": c.ratio(instrumentator, sw),
            "instrumentator / scalewise (both on FastAPI)": c.ratio(instrumentator, fsw),
            "scalewise / perf_counter floor": c.ratio(sw, variants["starlette_floor"][estimate]),
        }
    return {"rounds": args.rounds, "warmup": args.warmup, "variants": variants, "ratios": ratios}


_SERIES = re.compile(r"^scalewise_http_requests_total\{.*\} (\S+)$", re.MULTILINE)


def _server(args: argparse.Namespace) -> dict[str, Any]:
    loop, http = c.server_flavour()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for round_ in range(args.server_rounds):
        # Rotate the order each round, as part (a) does, so no variant always runs first.
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            with c.uvicorn_server(name, args.server_cpu, ITEM_PATH) as (base, pid):
                url = base + ITEM_PATH
                warm = c.wrk(url, args.wrk_cpu, args.threads, args.connections, args.warm)
                cpu_before = c.cpu_seconds(pid)
                run = c.wrk(url, args.wrk_cpu, args.threads, args.connections, args.duration)
                run["server_cpu_us"] = (c.cpu_seconds(pid) - cpu_before) / run["requests"] * 1e6
                run["sent"] = warm["requests"] + run["requests"] + 1
                if "scalewise" in name:
                    _, body = c.http_get(base + "/metrics")
                    run["counted"] = int(sum(float(v) for v in _SERIES.findall(body.decode())))
                runs[name].append(run)
    variants: dict[str, Any] = {}
    for name, results in runs.items():
        label, _, base = VARIANTS[name]
        variants[name] = {
            "label": label,
            "base": base,
            "rps": c.median([r["rps"] for r in results]),
            "server_cpu_us": c.median([r["server_cpu_us"] for r in results]),
            "p50_ms": c.median([r["p50_ms"] for r in results]),
            "p99_ms": c.median([r["p99_ms"] for r in results]),
            "non_2xx": sum(r["non_2xx"] for r in results),
            "socket_errors": sum(r["socket_errors"] for r in results),
            "runs": results,
        }
    for entry in variants.values():
        bare = variants[entry["base"]]
        entry["kept"] = c.ratio(entry["rps"], bare["rps"])
        # The same ratio taken round by round (variant and its bare app minutes apart, not
        # rounds apart), then the median: less exposed to the VM's slow drifts.
        entry["kept_paired"] = c.median(
            [r["rps"] / b["rps"] for r, b in zip(entry["runs"], bare["runs"], strict=True)]
        )
        entry["kept_cpu"] = c.ratio(bare["server_cpu_us"], entry["server_cpu_us"])
        entry["added_cpu_us"] = entry["server_cpu_us"] - bare["server_cpu_us"]
    command = runs[SCALEWISE][0]["command"]
    return {
        "loop": loop,
        "http": http,
        "wrk": command,
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
        "rounds": args.server_rounds,
        "variants": variants,
    }


def _bars(result: dict[str, Any]) -> list[dict[str, Any]]:
    bars = []
    inproc = result.get("inprocess")
    if inproc:
        sw = inproc["variants"][SCALEWISE]
        for key, estimate in (("median", "added_us"), ("best", "added_best_us")):
            added = sw[estimate]
            bars.append(
                {
                    "bar": f"scalewise adds <= {BARS['added_us']:g} µs/request in-process ({key})",
                    "value": round(added, 2),
                    "met": added <= BARS["added_us"],
                }
            )
        for key in ("median", "best"):
            for peer in ("starlette-exporter / scalewise", "instrumentator / scalewise"):
                value = inproc["ratios"][key][peer]
                bars.append(
                    {
                        "bar": f"{peer} >= {BARS['peer_ratio']:g}x ({key})",
                        "value": None if value is None else round(value, 1),
                        "met": value is not None and value >= BARS["peer_ratio"],
                    }
                )
    server = result.get("server")
    if server:
        entry = server["variants"][SCALEWISE]
        bars.append(
            {
                "bar": f"scalewise keeps >= {BARS['kept']:.0%} of bare throughput",
                "value": round(entry["kept"], 3),
                "met": entry["kept"] >= BARS["kept"],
            }
        )
        bars.append(
            {
                "bar": f"scalewise keeps >= {BARS['kept']:.0%} of bare throughput "
                "(median of per-round ratios)",
                "value": round(entry["kept_paired"], 3),
                "met": entry["kept_paired"] >= BARS["kept"],
            }
        )
        bars.append(
            {
                "bar": f"(server CPU) scalewise keeps >= {BARS['kept']:.0%} of bare CPU efficiency",
                "value": round(entry["kept_cpu"], 3),
                "met": entry["kept_cpu"] >= BARS["kept"],
            }
        )
    return bars


def _render(result: dict[str, Any]) -> str:
    out = [c.machine_line(result["machine"]), ""]
    inproc = result.get("inprocess")
    if inproc:
        out.append(
            f"(a) in-process on CPU {result['config']['cpu']}: {inproc['rounds']} "
            "interleaved rounds of ~"
            f"{result['config']['batch_seconds'] * 1e3:.0f} ms per variant; µs per call "
            "(process CPU time); added = median of per-round differences from the bare "
            "app, best = best round minus best bare round"
        )
        rows = []
        for entry in inproc["variants"].values():
            rows.append(
                [
                    entry["label"],
                    c.fmt(entry["us_per_call"]),
                    c.fmt(entry["best"]),
                    c.fmt(entry.get("added_us")),
                    c.fmt(entry.get("added_best_us")),
                    entry["calls_per_round"],
                    f"{entry['counted']}/{entry['sent']}" if "counted" in entry else "",
                ]
            )
        out.append(
            c.table(
                [
                    "variant",
                    "median µs",
                    "best µs",
                    "added µs (median)",
                    "added µs (best)",
                    "calls/round",
                    "counted/sent",
                ],
                rows,
            )
        )
        out.append("")
        ratios = inproc["ratios"]
        out.append(
            c.table(
                ["ratio of added µs", "median ×", "best ×"],
                [
                    [k, c.fmt(v, 1), c.fmt(ratios["best"][k], 1)]
                    for k, v in ratios["median"].items()
                ],
            )
        )
        out.append("")
    server = result.get("server")
    if server:
        out.append(
            f"(b) uvicorn ({server['loop']} loop, {server['http']}), 1 worker on CPU "
            f"{server['server_cpu']}; `{server['wrk']}` on CPU {server['wrk_cpu']}; "
            f"median of {server['rounds']} round(s); server CPU = the server "
            "process's user+system CPU during the run, per request"
        )
        rows = [
            [
                e["label"],
                c.fmt(e["rps"], 0),
                f"{e['kept']:.1%}",
                c.fmt(e["server_cpu_us"], 1),
                c.fmt(e["added_cpu_us"], 1) if e["base"] != name else "—",
                f"{e['kept_cpu']:.1%}",
                c.fmt(e["p50_ms"]),
                c.fmt(e["p99_ms"]),
                e["non_2xx"] + e["socket_errors"],
                f"{e['runs'][-1]['counted']}/{e['runs'][-1]['sent']}"
                if "counted" in e["runs"][-1]
                else "",
            ]
            for name, e in server["variants"].items()
        ]
        out.append(
            c.table(
                [
                    "variant",
                    "req/s",
                    "kept",
                    "server CPU µs/req",
                    "added",
                    "kept (CPU)",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "counted/sent",
                ],
                rows,
            )
        )
        out.append("")
    out.extend(c.bar_line(b["bar"], b["met"], str(b["value"])) for b in result["bars"])
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--rounds", type=int, default=60, help="in-process rounds (>= 5)")
    parser.add_argument("--warmup", type=int, default=3000, help="warm-up calls per variant")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=0.025,
        help="target seconds per variant per in-process round",
    )
    parser.add_argument("--cpu", type=int, default=0, help="CPU for the in-process part")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds per run")
    parser.add_argument("--warm", type=int, default=1, help="wrk warm-up seconds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--server-rounds", type=int, default=1)
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-inprocess", action="store_true")
    args = parser.parse_args()

    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "middleware_overhead",
        "machine": c.machine(),
        "config": vars(args),
    }
    if not args.skip_inprocess:
        c.pin(args.cpu)
        result["inprocess"] = asyncio.run(_inprocess(args))
    if not args.skip_server:
        result["server"] = _server(args)
    result["bars"] = _bars(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    c.emit(result, args.json, _render)


if __name__ == "__main__":
    main()
