"""Rate limits under concurrency against a real redis-server, and what happens when it is down.

Shared tests use the server on 127.0.0.1:6379 with a unique key prefix each and clean up.
Tests that count commands or flush scripts start a private ``redis-server`` on a free port,
so other users of the shared server neither disturb the counts nor lose their scripts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalewise.clock import ManualClock
from scalewise.guard.algorithms import Rate
from scalewise.guard.backends.memory import MemoryBackend
from scalewise.guard.backends.redis import AsyncRedisBackend, RedisBackend
from scalewise.guard.ratelimit import RateLimiter
from tests.conftest import Server, free_port, require, require_command

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"


def shut(client: redis.Redis) -> None:
    """Close a client and every pooled socket (``close()`` alone leaves the pool open, and a
    socket left to the garbage collector warns at an arbitrary later moment)."""
    client.close()
    client.connection_pool.disconnect()


@contextmanager
def connected(client: redis.Redis) -> Iterator[redis.Redis]:
    try:
        yield client
    finally:
        shut(client)


def _up(url: str) -> bool:
    try:
        with connected(redis.Redis.from_url(url, socket_connect_timeout=1)) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def prefix() -> Iterator[str]:
    require(_up(REDIS_URL), "redis-server not reachable on 127.0.0.1:6379 (Debian redis-server)")
    value = f"swtest:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=value + "*", count=1000))
    if keys:
        client.delete(*keys)
    shut(client)


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A redis-server of our own, on a free port, stopped by PID afterwards."""
    binary = require_command("redis-server", "redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = Server(argv, port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _up(url):
            if time.monotonic() > deadline or server.proc.poll() is not None:
                pytest.fail("private redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        server.stop()


def test_threads_never_exceed_the_limit(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, max_connections=32)
    rl = RateLimiter("50/hour", RedisBackend(client, prefix=prefix))
    counts: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(rl.check("shared").allowed for _ in range(25))
        with lock:
            counts.append(n)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    shut(client)
    assert len(counts) == 16
    assert sum(counts) == 50  # 400 attempts, exactly the burst admitted


def test_asyncio_clients_never_exceed_the_limit(prefix: str) -> None:
    async def main() -> int:
        pool = redis.asyncio.BlockingConnectionPool.from_url(REDIS_URL, max_connections=32)
        client = redis.asyncio.Redis(connection_pool=pool)
        rl = RateLimiter("30/hour", AsyncRedisBackend(client, prefix=prefix))
        try:
            results = await asyncio.gather(*(rl.acheck("shared") for _ in range(300)))
        finally:
            await client.aclose()
            await pool.disconnect()
        return sum(d.allowed for d in results)

    assert asyncio.run(main()) == 30


def test_sustained_rate_bounded_by_server_time(prefix: str) -> None:
    """Real time, real server: admissions stay within burst + elapsed/T (+1 for the edge)."""
    rate = Rate(20, 1.0, burst=5)  # one per 50 ms after a burst of 5
    client = redis.Redis.from_url(REDIS_URL, max_connections=16)
    rl = RateLimiter(rate, RedisBackend(client, prefix=prefix))
    stop = time.monotonic() + 1.0
    counts: list[int] = []

    def worker() -> None:
        n = 0
        for _ in range(100_000):  # bounded in count and in time
            if time.monotonic() > stop:
                break
            n += rl.check("k").allowed
        counts.append(n)

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - start
    shut(client)
    upper = rate.burst + int(elapsed / rate.emission_interval) + 1
    assert sum(counts) <= upper
    assert sum(counts) >= rate.burst + int(0.8 / rate.emission_interval)  # not over-strict


def test_memory_clock_edges_under_threads() -> None:
    """Threads hammer one key while a ManualClock steps; admissions equal the refills exactly."""
    clock = ManualClock()
    rl = RateLimiter(Rate(10, 1.0, burst=3), MemoryBackend(clock=clock))
    threads_n, steps = 6, 40
    barrier = threading.Barrier(threads_n + 1, timeout=30)
    admitted = [0] * threads_n

    def worker(i: int) -> None:
        for _ in range(steps):
            barrier.wait()  # the clock has moved; everyone races for the refill
            admitted[i] += sum(rl.check("edge").allowed for _ in range(5))
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for step in range(steps):
        barrier.wait()
        barrier.wait()
        # a step just short of, exactly on, or just past a 100 ms edge
        clock.advance((0.0999, 0.1, 0.1001)[step % 3])
    for t in threads:
        t.join(timeout=30)
    # burst 3 at t=0, then one per full 100 ms crossed before the last check
    elapsed = sum((0.0999, 0.1, 0.1001)[s % 3] for s in range(steps - 1))
    assert sum(admitted) == 3 + int(elapsed / 0.1 + 1e-9)


class CountingConnection(redis.Connection):
    """A real connection that counts the requests it writes (one per round trip)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def test_exactly_one_round_trip_per_check(private_redis: str) -> None:
    pool = redis.ConnectionPool.from_url(private_redis, connection_class=CountingConnection)
    with (
        connected(redis.Redis.from_url(private_redis)) as counter,
        connected(redis.Redis(connection_pool=pool)) as client,
    ):
        rl = RateLimiter("1000/hour", RedisBackend(client, prefix="rt:"))
        rl.check("warm")  # the first check sends the script with EVAL (still one trip)
        counter.config_resetstat()
        CountingConnection.sent = 0
        for i in range(100):
            rl.check(f"user-{i % 7}")
        stats = counter.info("commandstats")
    assert CountingConnection.sent == 100
    assert stats["cmdstat_evalsha"]["calls"] == 100
    assert "cmdstat_eval" not in stats
    assert "cmdstat_script|load" not in stats


def test_noscript_fallback_after_flush(private_redis: str) -> None:
    with connected(redis.Redis.from_url(private_redis)) as client:
        rl = RateLimiter("2/hour", RedisBackend(client, prefix="ns:"))
        assert rl.check("u").allowed
        client.script_flush()  # as after a Redis restart
        assert rl.check("u").allowed
        assert not rl.check("u").allowed

    async def main() -> list[bool]:
        aclient = redis.asyncio.Redis.from_url(private_redis)
        arl = RateLimiter("2/hour", AsyncRedisBackend(aclient, prefix="ns2:"))
        out = [(await arl.acheck("u")).allowed]
        await aclient.script_flush()
        out += [(await arl.acheck("u")).allowed, (await arl.acheck("u")).allowed]
        await aclient.aclose()
        await aclient.connection_pool.disconnect()
        return out

    assert asyncio.run(main()) == [True, True, False]


def test_idle_keys_expire_in_redis(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    backend = RedisBackend(client, prefix=prefix)
    RateLimiter("10/minute", backend).check("u", cost=3)
    ttl = client.pttl(backend.key("u"))
    shut(client)
    assert 17_000 < ttl <= 18_000  # expires when back to a full burst: 3 units × 6 s


def test_instances_with_skewed_clocks_share_one_limit(prefix: str) -> None:
    """Server TIME decides, so two 'instances' agree whatever their own clocks say."""
    with (
        connected(redis.Redis.from_url(REDIS_URL)) as one,
        connected(redis.Redis.from_url(REDIS_URL)) as two,
    ):
        a = RateLimiter("4/hour", RedisBackend(one, prefix=prefix))
        b = RateLimiter("4/hour", RedisBackend(two, prefix=prefix))
        results = [(a if i % 2 else b).check("u").allowed for i in range(8)]
    assert results == [True] * 4 + [False] * 4


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_logged_once_per_interval(
    fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens here
    backend = RedisBackend.from_url(url, cooldown=0, log_interval=60, clock=clock.monotonic)
    rl = RateLimiter("1/s", backend, fail_open=fail_open)
    caplog.set_level(logging.ERROR, "scalewise.guard.redis")
    first = [rl.check(f"u{i}") for i in range(50)]
    assert all(d.degraded and d.allowed is fail_open for d in first)
    records = [r for r in caplog.records if r.name == "scalewise.guard.redis"]
    assert len(records) == 1
    clock.advance(61)
    rl.check("again")
    records = [r for r in caplog.records if r.name == "scalewise.guard.redis"]
    assert len(records) == 2
    assert "49 more since the last report" in records[1].getMessage()


def test_cooldown_skips_redis_while_it_is_down(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    calls: list[Any] = []

    class Counting(redis.Redis):  # a real client that records what it tries to send
        def execute_command(self, *args: Any, **options: Any) -> Any:
            calls.append(args[0])
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    client = Counting(port=free_port(), socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0))
    rl = RateLimiter("1/s", RedisBackend(client, cooldown=1.0, clock=clock.monotonic))
    caplog.set_level(logging.CRITICAL, "scalewise.guard.redis")
    for _ in range(20):
        assert rl.check("u").degraded
    assert len(calls) == 1  # one attempt, then 1 s of answers without touching the network
    clock.advance(1.0)
    rl.check("u")
    shut(client)
    assert len(calls) == 2


def test_redis_comes_back(private_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    port = int(private_redis.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    dead = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    backend = RedisBackend(dead, cooldown=1.0, clock=clock.monotonic)
    rl = RateLimiter("1/hour", backend, fail_open=False)
    caplog.set_level(logging.CRITICAL, "scalewise.guard.redis")
    assert not rl.check("u").allowed
    with connected(redis.Redis(port=port)) as live:
        backend.client = live  # the operator fixed the URL / Redis restarted
        assert rl.check("u").degraded  # still cooling down
        clock.advance(1.0)
        recovered = rl.check("u")
    shut(dead)
    assert (recovered.allowed, recovered.degraded) == (True, False)
