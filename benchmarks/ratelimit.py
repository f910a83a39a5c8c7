"""scalewise's rate limiter against ``limits`` (alisaifee/limits): µs per check in memory, and
round trips per check in Redis.

Memory: the same key sequence (1,000 callers, cycled) goes through scalewise's
``RateLimiter.check`` and through ``limits``' ``MovingWindowRateLimiter``,
``FixedWindowRateLimiter`` and ``SlidingWindowCounterRateLimiter`` on ``MemoryStorage``, all at
"100/minute", in the same loop shape (a list comprehension over a bound method). Repeats are
interleaved (the order rotates) and the median is reported with the range. Each pass starts
from fresh state; the passes mix admitted and refused checks the same way for every variant.
A no-op bound method in the same loop measures loop overhead.

Redis: a private ``redis-server`` on a free loopback port (so nothing else shares it), the
same checks through scalewise's ``RedisBackend`` and ``limits``' ``RedisStorage``. Round
trips are counted on the client by a ``redis.Connection`` subclass that counts the requests
it writes (``send_packed_command``, one per round trip), after a warm-up that loads scripts;
server-side ``INFO commandstats`` is printed as a cross-check. Time per check over loopback
is reported too, but round trips are the figure that survives a real network.

Run: ``PYTHONPATH=src python benchmarks/ratelimit.py [--json] [--n 200000] [--cpu 0]``
"""

from __future__ import annotations

import argparse
import functools
import gc
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from limits import RateLimitItemPerMinute, strategies
from limits.storage import MemoryStorage, RedisStorage

import _common as c
from scalewise.guard.backends.memory import MemoryBackend
from scalewise.guard.backends.redis import RedisBackend
from scalewise.guard.ratelimit import RateLimiter

BAR_US = 5.0
LIMIT = "100/minute"
LIMITS_STRATEGIES: dict[str, Any] = {
    "limits MovingWindow": strategies.MovingWindowRateLimiter,
    "limits FixedWindow": strategies.FixedWindowRateLimiter,
    "limits SlidingWindowCounter": strategies.SlidingWindowCounterRateLimiter,
}


class _Noop:
    def check(self, key: str) -> None:
        return None


def memory_makers() -> dict[str, Callable[[], Callable[[str], Any]]]:
    item = RateLimitItemPerMinute(100)
    makers: dict[str, Callable[[], Callable[[str], Any]]] = {
        "no-op (loop overhead)": lambda: _Noop().check,
        "scalewise RateLimiter (GCRA)": lambda: RateLimiter(LIMIT, MemoryBackend()).check,
    }
    for name, cls in LIMITS_STRATEGIES.items():

        def make(cls: Any = cls) -> Callable[[str], Any]:
            limiter = cls(MemoryStorage())
            return lambda key: limiter.hit(item, key)

        makers[name] = make
    return makers


def _time_us(check: Callable[[str], Any], keys: list[str]) -> float:
    gc.disable()
    try:
        start = time.perf_counter()
        [check(k) for k in keys]  # the loop shape under test
        return (time.perf_counter() - start) / len(keys) * 1e6
    finally:
        gc.enable()


def memory_speed(n: int, repeats: int) -> dict[str, Any]:
    keys = [f"user-{i % 1000}" for i in range(n)]
    makers = memory_makers()
    names = list(makers)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up pass, discarded
        _time_us(makers[name](), keys[: n // 10])
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            runs[name].append(_time_us(makers[name](), keys))
    sw = c.median(runs["scalewise RateLimiter (GCRA)"])
    out: dict[str, Any] = {"n": n, "repeats": repeats, "variants": {}}
    for name, values in runs.items():
        med = c.median(values)
        out["variants"][name] = {
            "us": med,
            "min": min(values),
            "max": max(values),
            "over_scalewise": c.ratio(med, sw),
        }
    return out


class CountingConnection(redis.Connection):
    """A real connection that counts the requests it writes: one per round trip."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@contextmanager
def private_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not installed (Debian package redis-server)")
    port = c.free_port()
    argv = [binary, "--port", str(port), "--bind", c.HOST, "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"redis://{c.HOST}:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("private redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        c.stop_pid(proc)


def redis_checkers(url: str) -> dict[str, Callable[[str], Any]]:
    item = RateLimitItemPerMinute(100)
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    checkers: dict[str, Callable[[str], Any]] = {
        "scalewise RedisBackend (GCRA)": RateLimiter(LIMIT, RedisBackend(client)).check
    }
    for name, cls in LIMITS_STRATEGIES.items():
        lpool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
        limiter = cls(RedisStorage(url, connection_pool=lpool))
        checkers[name] = functools.partial(limiter.hit, item)
    return checkers


def redis_trips(n: int, repeats: int) -> dict[str, Any]:
    keys = [f"user-{i % 50}" for i in range(n)]
    out: dict[str, Any] = {"n": n, "repeats": repeats, "variants": {}}
    with private_redis() as url:
        admin = redis.Redis.from_url(url)
        checkers = redis_checkers(url)
        names = list(checkers)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(repeats):  # interleaved, rotating order: load noise hits all alike
            for name in names[r % len(names) :] + names[: r % len(names)]:
                check = checkers[name]
                [check(f"warm-{i}") for i in range(5)]  # scripts loaded, pools connected
                admin.config_resetstat()
                admin.flushdb()
                CountingConnection.sent = 0
                start = time.perf_counter()
                [check(k) for k in keys]
                times[name].append((time.perf_counter() - start) / n * 1e6)
                stats = admin.info("commandstats")
                out["variants"][name] = {
                    "round_trips_per_check": CountingConnection.sent / n,
                    "server_commands": {
                        k.removeprefix("cmdstat_"): v["calls"]
                        for k, v in stats.items()
                        if k not in ("cmdstat_config|resetstat", "cmdstat_flushdb")
                    },
                }
        for name in names:
            out["variants"][name]["us_per_check"] = c.median(times[name])
            out["variants"][name]["us_range"] = c.spread(times[name])
    sw = out["variants"]["scalewise RedisBackend (GCRA)"]
    for v in out["variants"].values():
        v["trips_over_scalewise"] = c.ratio(v["round_trips_per_check"], sw["round_trips_per_check"])
        v["time_over_scalewise"] = c.ratio(v["us_per_check"], sw["us_per_check"])
    return out


def _render(result: dict[str, Any]) -> str:
    mem, rt = result["memory"], result["redis"]
    lines = [
        c.machine_line(result["machine"]),
        "",
        f"memory, {LIMIT}, 1,000 callers: median of {mem['repeats']} passes x {mem['n']:,} checks",
    ]
    rows = [
        [name, c.fmt(v["us"], 3), f"{v['min']:.3f}–{v['max']:.3f}", c.fmt(v["over_scalewise"])]
        for name, v in mem["variants"].items()
    ]
    lines.append(c.table(["variant", "µs/check", "range", "x scalewise"], rows))
    lines += [
        "",
        f"redis (private redis-server, loopback): median of {rt['repeats']} passes x "
        f"{rt['n']:,} checks over 50 callers; trips counted on the client",
    ]
    rows = [
        [
            name,
            c.fmt(v["round_trips_per_check"], 3),
            c.fmt(v["trips_over_scalewise"]),
            f"{v['us_per_check']:.1f} ({v['us_range'][0]:.0f}–{v['us_range'][1]:.0f})",
            c.fmt(v["time_over_scalewise"]),
            " ".join(f"{k}={n}" for k, n in sorted(v["server_commands"].items())),
        ]
        for name, v in rt["variants"].items()
    ]
    lines.append(
        c.table(
            ["variant", "trips/check", "x", "µs/check", "x", "server commands (incl. in-script)"],
            rows,
        )
    )
    sw_us = mem["variants"]["scalewise RateLimiter (GCRA)"]["us"]
    trips = rt["variants"]["scalewise RedisBackend (GCRA)"]["round_trips_per_check"]
    lines += [
        "",
        c.bar_line(f"memory check <= {BAR_US:g} µs", sw_us <= BAR_US, f"{sw_us:.2f} µs"),
        c.bar_line("redis: exactly one round trip per check", trips == 1.0, f"{trips:g}"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="memory checks per pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--redis-n", type=int, default=3_000, help="redis checks per pass")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    c.pin(args.cpu)
    result = {
        "machine": c.machine(),
        "config": vars(args),
        "memory": memory_speed(args.n, args.repeats),
        "redis": redis_trips(args.redis_n, args.repeats),
    }
    c.emit(result, args.json, _render)


if __name__ == "__main__":
    main()
