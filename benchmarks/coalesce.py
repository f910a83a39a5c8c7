"""1 000 concurrent identical calls: backend calls and wall time, with and without coalescing.

The "backend" is an async call that takes ``--latency`` seconds (a database query stand-in)
and counts its executions. Variants, all in one run:

- ``none``: every caller runs the backend call;
- ``naive lock + dict``: the common hand-rolled fix (one ``asyncio.Lock`` held across the call,
  results in a dict): one call per key, but distinct keys queue behind one another;
- ``scalewise Coalescer``: per-key single-flight plus the TTL cache;
- ``scalewise via Redis``: two backends on separate connections (two "instances"), each in
  front of its own ``Coalescer``, callers split between them; Redis commands are counted from
  ``INFO stats``. Skipped (reported) when no redis-server answers on 127.0.0.1:6379.

Two workloads: every caller asks for one key, and callers spread over ``--keys`` keys.
Each cell is the median of ``--repeats`` runs; ratios are wall time against ``none``.

Run: ``PYTHONPATH=src python benchmarks/coalesce.py [--latency 0.05] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import _common as c
from scalewise.guard.coalesce import Coalescer

REDIS_URL = "redis://127.0.0.1:6379/0"
Call = Callable[[str], Awaitable[Any]]


class Backend:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    async def fetch(self, key: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(self.latency)
        return {"key": key, "rows": list(range(20))}


def none(backend: Backend) -> Call:
    return backend.fetch


def naive(backend: Backend) -> Call:
    lock, results = asyncio.Lock(), {}

    async def call(key: str) -> Any:
        async with lock:
            if key not in results:
                results[key] = await backend.fetch(key)
            return results[key]

    return call


def scalewise(backend: Backend) -> Call:
    coalescer = Coalescer[Any](ttl="30s")
    return lambda key: coalescer.run(key, lambda: backend.fetch(key))


async def measure(
    make: Callable[[Backend], Call], n: int, keys: int, latency: float
) -> dict[str, float]:
    backend = Backend(latency)
    call = make(backend)
    start = time.perf_counter()
    await asyncio.gather(*(call(f"k{i % keys}") for i in range(n)))
    return {"calls": backend.calls, "wall_ms": (time.perf_counter() - start) * 1e3}


async def measure_redis(n: int, keys: int, latency: float) -> dict[str, float]:
    import redis.asyncio as aioredis

    from scalewise.guard.backends.redis_coalesce import RedisCoalesceBackend

    prefix = f"scalewise-bench:{uuid.uuid4().hex[:8]}:"
    admin = aioredis.Redis.from_url(REDIS_URL)
    instances = [RedisCoalesceBackend.from_url(REDIS_URL, prefix=prefix) for _ in range(2)]
    coalescers = [Coalescer[Any](ttl="30s", backend=b) for b in instances]
    backend = Backend(latency)
    before = (await admin.info("stats"))["total_commands_processed"]
    start = time.perf_counter()
    await asyncio.gather(
        *(
            coalescers[i % 2].run(f"k{i % keys}", functools.partial(backend.fetch, f"k{i % keys}"))
            for i in range(n)
        )
    )
    wall = (time.perf_counter() - start) * 1e3
    after = (await admin.info("stats"))["total_commands_processed"]
    for b in instances:
        await b.aclose()
    stale = [k async for k in admin.scan_iter(match=prefix + "*")]
    if stale:
        await admin.delete(*stale)
    await admin.aclose()
    return {"calls": backend.calls, "wall_ms": wall, "redis_commands": after - before - 1}


def redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    variants: dict[str, Callable[[int], Coroutine[Any, Any, dict[str, float]]]] = {
        "none": lambda k: measure(none, args.calls, k, args.latency),
        "naive lock + dict": lambda k: measure(naive, args.calls, k, args.latency),
        "scalewise Coalescer": lambda k: measure(scalewise, args.calls, k, args.latency),
    }
    if redis_up():

        def via_redis(k: int) -> Coroutine[Any, Any, dict[str, float]]:
            return measure_redis(args.calls, k, args.latency)

        variants["scalewise via Redis (2 instances)"] = via_redis
    rows: list[dict[str, Any]] = []
    for keys in (1, args.keys):
        for name, fn in variants.items():
            reps = [asyncio.run(fn(keys)) for _ in range(args.repeats)]
            row: dict[str, Any] = {"variant": name, "keys": keys}
            for field in reps[0]:
                row[field] = c.median([r[field] for r in reps])
            rows.append(row)
    for row in rows:
        base = next(r for r in rows if r["keys"] == row["keys"] and r["variant"] == "none")
        row["wall_vs_none"] = c.ratio(row["wall_ms"], base["wall_ms"])
        row["calls_vs_none"] = c.ratio(row["calls"], base["calls"])
    return {"rows": rows, "redis": redis_up()}


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        c.machine_line(result["machine"]),
        "",
        f"{cfg['calls']:,} concurrent calls, backend latency {cfg['latency'] * 1e3:g} ms, "
        f"median of {cfg['repeats']} runs",
        "",
        c.table(
            ["variant", "keys", "backend calls", "wall ms", "wall / none", "Redis commands"],
            [
                [
                    r["variant"],
                    r["keys"],
                    c.fmt(r["calls"], 0),
                    c.fmt(r["wall_ms"], 1),
                    c.fmt(r["wall_vs_none"], 3),
                    c.fmt(r.get("redis_commands"), 0),
                ]
                for r in result["run"]["rows"]
            ],
        ),
        "",
    ]
    for r in result["run"]["rows"]:
        if r["keys"] == 1 and r["variant"].startswith("scalewise"):
            lines.append(
                c.bar_line(
                    f"{r['variant']}: 1 backend call for {cfg['calls']:,}",
                    r["calls"] == 1,
                    c.fmt(r["calls"], 0),
                )
            )
    if not result["run"]["redis"]:
        lines.append("Redis variant skipped: no redis-server on 127.0.0.1:6379")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10, help="distinct keys in workload two")
    parser.add_argument("--latency", type=float, default=0.05, help="backend seconds per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "coalesce", "machine": c.machine(), "config": vars(args)}
    result["run"] = run(args)
    c.emit(result, args.json, render)


if __name__ == "__main__":
    main()
