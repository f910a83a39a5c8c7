"""One suite, every rate-limit backend: process memory and Redis (127.0.0.1:6379).

Memory runs on a ManualClock. Redis keeps time with its own ``TIME`` (that is the point: app
clocks do not matter), so the suite uses long periods where elapsed test time is noise, and
the one replenishment test waits a real tenth of a second for Redis only. Each Redis test
gets a unique key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio
from tests.conftest import require

from scalewise.clock import ManualClock
from scalewise.guard.algorithms import Rate
from scalewise.guard.backends.memory import MemoryBackend
from scalewise.guard.backends.redis import AsyncRedisBackend, RedisBackend
from scalewise.guard.ratelimit import RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


@functools.cache
def redis_missing() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.connection_pool.disconnect()
    except redis.RedisError as exc:
        return f"redis-server not reachable at 127.0.0.1:6379: {exc}"
    return None


@dataclass
class Kind:
    """A backend under test: a sync one, a way to make an async one, and a way to wait."""

    sync: Any
    make_async: Callable[[], Any]
    wait: Callable[[float], None]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def kind(request: pytest.FixtureRequest) -> Iterator[Kind]:
    if request.param == "memory":
        clock = ManualClock()
        backend = MemoryBackend(clock=clock)
        yield Kind(backend, lambda: backend, clock.advance)
        return
    missing = redis_missing()
    require(missing is None, missing or "")
    prefix = f"swtest:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    yield Kind(
        RedisBackend(client, prefix=prefix),
        lambda: AsyncRedisBackend(redis.asyncio.Redis.from_url(REDIS_URL), prefix=prefix),
        time.sleep,
    )
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    client.connection_pool.disconnect()


def run_async(kind: Kind, calls: Callable[[Any], Any]) -> Any:
    async def main() -> Any:
        backend = kind.make_async()
        try:
            return await calls(backend)
        finally:
            client = getattr(backend, "client", None)
            if client is not None:
                await client.aclose()
                await client.connection_pool.disconnect()

    return asyncio.run(main())


def test_burst_then_refusal(kind: Kind) -> None:
    rl = RateLimiter("5/hour", kind.sync)
    decisions = [rl.check("u") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(720, abs=1)
    assert decisions[4].reset_after == pytest.approx(3600, abs=1)
    assert decisions[-1].reset_after == pytest.approx(3600, abs=1)  # refusals consume nothing


def test_keys_are_independent_and_any_characters_work(kind: Kind) -> None:
    rl = RateLimiter("1/hour", kind.sync)
    keys = ["a", "b", "", "ключ", "with space", "new\nline", "\x00nul", "x" * 50_000, "{slot}"]
    assert [rl.check(k).allowed for k in keys] == [True] * len(keys)
    assert [rl.check(k).allowed for k in keys] == [False] * len(keys)


def test_cost_and_peek(kind: Kind) -> None:
    rl = RateLimiter("10/hour", kind.sync)
    assert rl.check("u", cost=7).remaining == 3
    refused = rl.check("u", cost=4)
    assert (refused.allowed, refused.remaining) == (False, 3)
    assert refused.retry_after == pytest.approx(360, abs=1)
    assert rl.check("u", cost=0).remaining == 3
    assert rl.check("u", cost=3).allowed
    assert not rl.check("u").allowed


def test_replenishes_over_time(kind: Kind) -> None:
    rl = RateLimiter(Rate(10, 1.0, burst=1), kind.sync)  # one per 100 ms
    assert rl.check("u").allowed
    refused = rl.check("u")
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.1
    kind.wait(0.11)
    assert rl.check("u").allowed


def test_routes_and_tiers_have_separate_state(kind: Kind) -> None:
    rl = RateLimiter("1/hour", kind.sync, tiers={"pro": "3/hour"}, routes={"/a/{x}": "2/hour"})
    assert sum(rl.check("u", path="/a/1").allowed for _ in range(5)) == 2
    assert sum(rl.check("u", tier="pro").allowed for _ in range(5)) == 3


def test_async_matches_sync(kind: Kind) -> None:
    rate = Rate.parse("3/hour")

    async def calls(backend: Any) -> list[tuple[bool, int]]:
        out = []
        for _ in range(4):
            allowed, remaining, _, _ = await backend.agcra("async-key", rate, 1)
            out.append((allowed, remaining))
        return out

    assert run_async(kind, calls) == [(True, 2), (True, 1), (True, 0), (False, 0)]
    # and the async side wrote the state the sync side reads
    assert not RateLimiter(rate, kind.sync).check("async-key").allowed


def test_limiter_acheck(kind: Kind) -> None:
    async def calls(backend: Any) -> list[bool]:
        rl = RateLimiter("2/hour", backend)
        return [(await rl.acheck("k")).allowed for _ in range(3)]

    assert run_async(kind, calls) == [True, True, False]
