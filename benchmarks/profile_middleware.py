"""Where ScalewiseMiddleware's per-request time goes (a diagnostic, not a bar).

Three views, all in one process pinned to one CPU, timed with process CPU time:

1. In situ ablation: the Starlette app of ``middleware_overhead.py`` with scalewise as
   shipped, and variants with ONE part of its request path replaced on the instance by a
   no-op or by a replica of ``Recorder.finished`` with lines removed (this process only;
   scalewise's code is not changed). Many short interleaved rounds; the best round of each
   variant is the estimate least disturbed by other load (medians are shown too).
2. Isolated step costs: each call the middleware makes per request, timed alone with
   ``timeit`` on the objects a real request leaves behind.
3. ``Histogram.record`` line by line: replicas of its body with lines removed (the shipped
   method is timed too, to show the replicas match it).

Run: ``PYTHONPATH=src python benchmarks/profile_middleware.py [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import time
import timeit
import types
from bisect import bisect_left
from typing import Any

import _common as c
from _apps import ITEM_PATH, starlette_bare, starlette_floor, starlette_scalewise
from middleware_overhead import _batch
from scalewise import Histogram, ScalewiseMiddleware
from scalewise.metrics import histogram as hmod
from scalewise.middleware.asgi import _Exchange
from scalewise.middleware.routes import starlette_route


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _zero() -> float:
    return 0.0


# -- 1. ablation -------------------------------------------------------------------------------


def _record_compare(h: Histogram, value: float) -> None:
    """What-if: ``Histogram.record`` with comparisons instead of ``max()``/``min()``."""
    if value >= _MIN:
        if value <= _MAX:
            h._counts[int(_log(value) * _INV + _OFF)] += 1
        else:
            h._counts[_OVERFLOW] += 1
    elif value >= 0.0:
        h._counts[0] += 1
    else:
        raise ValueError(value)
    h.count += 1
    h.sum += value
    if value > h.max:
        h.max = value
    if value < h.min:
        h.min = value


def _finished_replica(drop: frozenset[str]) -> Any:
    """A copy of ``Recorder.finished`` (scalewise 0.1.0) with the parts in ``drop`` removed;
    bound to a recorder it replaces the shipped method on that instance only."""
    from scalewise.metrics.windows import RouteSlot

    no_prom, no_latency = "prometheus" in drop, "latency" in drop
    no_ttfb, compare = "ttfb" in drop, "compare" in drop
    no_busy, no_lookups = "busy" in drop, "lookups" in drop
    fixed: dict[str, Any] = {}

    def finished(
        self: Any,
        method: str,
        route: str,
        status: int,
        start: float,
        end: float,
        ttfb: float | None = None,
        queue: float | None = None,
        disconnected: bool = False,
    ) -> None:
        seconds = end - start
        if no_lookups and fixed:  # the slot and series of the first call, reused
            slot, cell = fixed["slot"], fixed["cell"]
        else:
            slot = self._slot(end)
            cell = self._series(method, route, status)
            fixed.update(slot=slot, cell=cell)
        self.inflight -= 1
        if self.inflight == 0 and not no_busy:
            busy = end - self._busy_since
            slot.busy_seconds += busy
            self.table.counters["busy_seconds"] += busy
        if not no_prom:
            hist = cell.duration
            hist.counts[bisect_left(hist.bounds, seconds)] += 1
            hist.count += 1
            hist.sum += seconds
        stats = slot.routes.get(cell.key)
        if stats is None:
            stats = slot.routes[cell.key] = RouteSlot()
        if not no_latency:
            if compare:
                _record_compare(stats.latency, seconds)
            else:
                stats.latency.record(seconds)
        if status >= 400:
            slot.count_error(stats, status)
        if ttfb is not None and not no_ttfb:
            if compare:
                _record_compare(slot.ttfb, ttfb)
            else:
                slot.ttfb.record(ttfb)
            self.table.ttfb.observe(ttfb)
        if queue is not None:
            slot.queue_time.record(queue)
            self.table.queue_time.observe(queue)
        if disconnected:
            slot.disconnects += 1
            self.table.counters["disconnects"] += 1

    return finished


def _replace_finished(drop: frozenset[str]) -> Any:
    def patch(mw: Any) -> None:
        mw.recorder.finished = types.MethodType(_finished_replica(drop), mw.recorder)

    return patch


def _set(target: str, attr: str, value: Any) -> Any:
    def patch(mw: Any) -> None:
        setattr(mw if target == "mw" else mw.recorder, attr, value)

    return patch


def _passthrough(mw: Any) -> None:
    mw._measure = mw.app  # __call__'s dispatch only: same signature, no measuring


#: Each variant removes ONE part from the shipped middleware; its cost is the difference.
ABLATIONS: dict[str, Any] = {
    "scalewise as shipped": None,
    "_measure() -> plain call of the app (dispatch only)": _passthrough,
    "_finish() -> no-op (route, queue header, recorder.finished)": _set("mw", "_finish", _noop),
    "recorder.started() -> constant": _set("rec", "started", _zero),
    "recorder.finished() -> no-op": _set("rec", "finished", _noop),
    "queue_time_header off (no header scan)": _set("mw", "queue_headers", False),
    "recorder.finished() -> replica (check: should match shipped)": _replace_finished(frozenset()),
    "  replica without the Prometheus duration cell": _replace_finished(frozenset({"prometheus"})),
    "  replica without the route latency Histogram.record": _replace_finished(
        frozenset({"latency"})
    ),
    "  replica without the TTFB record + observe": _replace_finished(frozenset({"ttfb"})),
    "  replica without the busy-time bookkeeping": _replace_finished(frozenset({"busy"})),
    "  replica without _slot() and _series() (reuses the first)": _replace_finished(
        frozenset({"lookups"})
    ),
    "  replica with all four of the above removed": _replace_finished(
        frozenset({"prometheus", "latency", "ttfb", "busy", "lookups"})
    ),
    "  what-if: replica, Histogram.record with compares for max/min": _replace_finished(
        frozenset({"compare"})
    ),
}


async def _ablation(rounds: int, batch_seconds: float) -> dict[str, Any]:
    scope = c.http_scope(ITEM_PATH)
    apps: dict[str, Any] = {
        "bare Starlette": starlette_bare(),
        "perf_counter floor": starlette_floor(),
    }
    for name, patch in ABLATIONS.items():
        app = starlette_scalewise()
        await c.call(app, scope)
        if patch is not None:
            patch(c.find_instance(app, ScalewiseMiddleware))
        apps[name] = app
    sizes = {}
    for name, app in apps.items():
        await _batch(app, scope, 3000)
        sizes[name] = max(200, int(batch_seconds / await _batch(app, scope, 1000)))
    per_call: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            per_call[name].append(await _batch(apps[name], scope, sizes[name]) * 1e6)
    bare, shipped = per_call["bare Starlette"], per_call["scalewise as shipped"]
    out = {}
    for name, values in per_call.items():
        out[name] = {
            "best_us": min(values),
            "median_us": c.median(values),
            "added_best_us": min(values) - min(bare),
            "added_median_us": c.median([x - b for x, b in zip(values, bare, strict=True)]),
            "part_best_us": min(shipped) - min(values),
        }
    return out


# -- 2. isolated steps -------------------------------------------------------------------------


def _timeit(stmt: str, env: dict[str, Any], number: int, repeat: int = 7) -> float:
    """Median ns per execution of ``stmt``, CPU time."""
    timer = timeit.Timer(stmt, globals=env, timer=time.process_time)
    return statistics.median(timer.repeat(repeat, number)) / number * 1e9


async def _steps(number: int) -> dict[str, float]:
    app = starlette_scalewise()
    scope = c.http_scope(ITEM_PATH)
    await c.call(app, scope)
    mw = c.find_instance(app, ScalewiseMiddleware)
    rec = mw.recorder
    seen = dict(scope)  # the scope as the app leaves it, with "route" set by the router
    await mw.app(seen, c.receive, c.discard)
    route = starlette_route(seen, "")
    cell = next(iter(rec.table.requests.values())).duration
    env = {
        "mw": mw,
        "rec": rec,
        "seen": seen,
        "route": route,
        "h": Histogram(),
        "cell": cell,
        "bisect_left": bisect_left,
        "starlette_route": starlette_route,
        "_Exchange": _Exchange,
        "discard": c.discard,
        "perf": time.perf_counter,
    }
    steps = {
        "perf_counter()": "perf()",
        "monitor.ensure_task() via _start_background": "mw._start_background()",
        "recorder.started()": "t = rec.started(); rec.inflight -= 1",
        "recorder.started() + finished(), as called": (
            "t = rec.started(); rec.finished('GET', route, 200, t, t + 2e-4, 1e-4, None, False)"
        ),
        "  finished() without ttfb": (
            "t = rec.started(); rec.finished('GET', route, 200, t, t + 2e-4, None, None, False)"
        ),
        "  recorder._slot(now)": "rec._slot(perf())",
        "  recorder._series(method, route, status)": "rec._series('GET', route, 200)",
        "  Prometheus bucket (bisect, count, sum)": (
            "cell.counts[bisect_left(cell.bounds, 2e-4)] += 1; cell.count += 1; cell.sum += 2e-4"
        ),
        "  Histogram.record() (x2: latency, ttfb)": "h.record(2e-4)",
        "  table.ttfb.observe()": "rec.table.ttfb.observe(1e-4)",
        "middleware._route() (starlette_route)": "mw._route(seen, '', 200)",
        "middleware._queue_time() (3 headers)": "mw._queue_time(seen)",
        "_Exchange(...) construction": "_Exchange(discard, 1.0, mw)",
    }
    out = {name: _timeit(stmt, env, number) for name, stmt in steps.items()}
    out["_Exchange + 2 wrapped sends, minus 2 direct sends"] = await _wrapped_send(mw, number)
    return out


async def _wrapped_send(mw: Any, number: int) -> float:
    start = {"type": "http.response.start", "status": 200, "headers": []}
    body = {"type": "http.response.body", "body": b"{}"}

    async def direct() -> float:
        t0 = time.process_time()
        for _ in range(number):
            await c.discard(start)
            await c.discard(body)
        return time.process_time() - t0

    async def wrapped() -> float:
        t0 = time.process_time()
        for _ in range(number):
            state = _Exchange(c.discard, 1.0, mw)
            await state.send(start)
            await state.send(body)
        return time.process_time() - t0

    diffs = [(await wrapped()) - (await direct()) for _ in range(7)]
    return statistics.median(diffs) / number * 1e9


# -- 3. Histogram.record line by line ------------------------------------------------------------

_log = math.log
_INV = hmod._INV_LOG_GAMMA
_OFF = hmod._OFFSET
_MIN, _MAX, _OVERFLOW = hmod.MIN_VALUE, hmod.MAX_VALUE, hmod._OVERFLOW


class _Replica:
    """Copies of ``Histogram.record``'s body with parts removed (same globals, same slots)."""

    __slots__ = ("_counts", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self._counts = [0] * hmod.BUCKETS
        self.count, self.sum, self.max, self.min = 0, 0.0, 0.0, math.inf

    def empty(self, value: float) -> None:
        return None

    def range_checks(self, value: float) -> None:
        if value >= _MIN and value <= _MAX:
            pass

    def log(self, value: float) -> None:
        _log(value)

    def bucket_index(self, value: float) -> None:
        int(_log(value) * _INV + _OFF)

    def bucket_increment(self, value: float) -> None:
        self._counts[int(_log(value) * _INV + _OFF)] += 1

    def count_and_sum(self, value: float) -> None:
        self.count += 1
        self.sum += value

    def max_min_builtins(self, value: float) -> None:
        self.max = max(self.max, value)
        self.min = min(self.min, value)

    def max_min_compare(self, value: float) -> None:
        # What PLR1730 rewrites to max()/min(); here the comparison is the point.
        if value > self.max:
            self.max = value
        if value < self.min:
            self.min = value

    def full_replica(self, value: float) -> None:
        if value >= _MIN:
            if value <= _MAX:
                self._counts[int(_log(value) * _INV + _OFF)] += 1
            else:
                self._counts[_OVERFLOW] += 1
        elif value >= 0.0:
            self._counts[0] += 1
        else:
            raise ValueError(value)
        self.count += 1
        self.sum += value
        self.max = max(self.max, value)
        self.min = min(self.min, value)


def _record_lines(n: int, repeats: int) -> dict[str, float]:
    import numpy as np

    values = np.random.default_rng(1).lognormal(math.log(0.02), 1.0, n).tolist()
    makers = {
        name: (lambda name=name: getattr(_Replica(), name))
        for name in (
            "empty",
            "range_checks",
            "log",
            "bucket_index",
            "bucket_increment",
            "count_and_sum",
            "max_min_builtins",
            "max_min_compare",
            "full_replica",
        )
    }
    makers["Histogram.record (shipped)"] = lambda: Histogram().record
    runs: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(repeats):
        for name, make in makers.items():
            record = make()
            gc.disable()
            t0 = time.process_time()
            [record(v) for v in values]
            runs[name].append((time.process_time() - t0) / n * 1e9)
            gc.enable()
    return {name: c.median(v) for name, v in runs.items()}


def _render(result: dict[str, Any]) -> str:
    out = [
        c.machine_line(result["machine"]),
        "",
        "1. in situ ablation, µs per request (best round; median in brackets). "
        "'cost of part' = shipped − variant",
    ]
    out.append(
        c.table(
            ["variant", "µs/call", "added over bare", "cost of part"],
            [
                [
                    k,
                    f"{v['best_us']:.2f} ({v['median_us']:.2f})",
                    f"{v['added_best_us']:.2f} ({v['added_median_us']:.2f})",
                    c.fmt(v["part_best_us"]) if k in ABLATIONS else "—",
                ]
                for k, v in result["ablation"].items()
            ],
        )
    )
    out += ["", "2. isolated step costs (ns, median)"]
    out.append(c.table(["step", "ns"], [[k, c.fmt(v, 0)] for k, v in result["steps"].items()]))
    out += ["", "3. Histogram.record line by line (ns per call incl. the loop; 'empty' = loop)"]
    empty = result["record_lines"]["empty"]
    out.append(
        c.table(
            ["replica", "ns", "minus empty"],
            [[k, c.fmt(v, 0), c.fmt(v - empty, 0)] for k, v in result["record_lines"].items()],
        )
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=0.01,
        help="target seconds per variant per ablation round",
    )
    parser.add_argument("--number", type=int, default=20_000, help="timeit loops per repeat")
    parser.add_argument("-n", type=int, default=100_000, help="values per record() pass")
    args = parser.parse_args()
    c.pin(args.cpu)
    result: dict[str, Any] = {
        "benchmark": "profile_middleware",
        "machine": c.machine(),
        "config": vars(args),
    }
    result["ablation"] = asyncio.run(_ablation(args.rounds, args.batch_seconds))
    result["steps"] = asyncio.run(_steps(args.number))
    result["record_lines"] = _record_lines(args.n, 5)
    c.emit(result, args.json, _render)


if __name__ == "__main__":
    main()
