"""Coalescing across instances against a real redis-server on 127.0.0.1:6379.

In-process tests run two backends on separate connections (two "instances" in one loop);
the process tests run two uvicorn servers sharing Redis and kill one mid-call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from scalewise.errors import GuardError
from scalewise.guard.backends.redis_coalesce import PickleCodec, RedisCoalesceBackend
from scalewise.guard.coalesce import CoalescedCallError, Coalescer, CoalesceTimeout
from tests.conftest import Server, free_port, require, uvicorn_argv

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            pass
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except (OSError, redis.RedisError):
        return False


@pytest.fixture
def prefix() -> Iterator[str]:
    require(
        redis_up(), "redis-server not reachable on 127.0.0.1:6379 (Debian package redis-server)"
    )
    name = f"scalewise-test:{uuid.uuid4().hex[:12]}:"
    yield name
    sync = redis.Redis.from_url(REDIS_URL)
    keys = list(sync.scan_iter(match=name + "*", count=1000))
    if keys:
        sync.delete(*keys)
    sync.close()


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


def backend(prefix: str, **kw: Any) -> RedisCoalesceBackend:
    return RedisCoalesceBackend.from_url(REDIS_URL, prefix=prefix, **kw)


class Work:
    """The backend call: counted in Redis, held open until released."""

    def __init__(self, client: aioredis.Redis, counter: str, fail: bool = False) -> None:
        self.client, self.counter, self.fail = client, counter, fail
        self.release = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        n = await self.client.incr(self.counter)
        await self.release.wait()
        if self.fail:
            raise ValueError("database exploded")
        return {"answer": 42, "call": n}


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Wait for a condition on real I/O, bounded in time."""
    for _ in range(int(seconds / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_two_instances_thousand_calls_one_backend_call(prefix: str) -> None:
    async def main() -> tuple[list[Any], int]:
        a, b = backend(prefix), backend(prefix)
        ca, cb = Coalescer[Any](backend=a), Coalescer[Any](backend=b)
        work = Work(a.client, prefix + "calls")
        tasks = [asyncio.ensure_future((ca if i % 2 else cb).run("k", work)) for i in range(1000)]
        await until(lambda: _exists(a.client, prefix + "calls"))
        await until(lambda: _true(ca.stats().inflight == cb.stats().inflight == 1))
        work.release.set()
        results = await asyncio.gather(*tasks)
        calls = int((await a.client.get(prefix + "calls")) or b"0")
        later = await cb.run("k", work)  # cached in Redis and locally
        await a.aclose()
        await b.aclose()
        return [*results, later], calls

    results, calls = run(main)
    assert calls == 1
    assert all(r == {"answer": 42, "call": 1} for r in results)


def test_leader_failure_reaches_the_other_instance_and_is_not_cached(prefix: str) -> None:
    async def main() -> tuple[Any, Any, int]:
        a, b = backend(prefix), backend(prefix)
        ca, cb = Coalescer[Any](backend=a), Coalescer[Any](backend=b)
        work = Work(a.client, prefix + "calls", fail=True)
        lead = asyncio.ensure_future(ca.run("k", work))
        await until(lambda: _exists(a.client, prefix + "calls"))
        follow = asyncio.ensure_future(cb.run("k", work))
        await until(lambda: _true(cb.stats().inflight == 1))
        work.release.set()
        out = await asyncio.gather(lead, follow, return_exceptions=True)
        work.fail = False
        again = await cb.run("k", work)
        calls = int((await a.client.get(prefix + "calls")) or b"0")
        await a.aclose()
        await b.aclose()
        return out, again, calls

    (leader, follower), again, calls = run(main)
    assert isinstance(leader, ValueError)
    assert isinstance(follower, CoalescedCallError)
    assert (follower.error_type, follower.message) == ("ValueError", "database exploded")
    assert again == {"answer": 42, "call": 2}
    assert calls == 2


def test_dead_leader_lock_expires_and_a_follower_takes_over(prefix: str) -> None:
    async def main() -> tuple[Any, RedisCoalesceBackend]:
        b = backend(prefix, lock_ttl="5s")
        # A leader that died holding the lock: its lock lives on for 300 ms, then expires.
        lock = f"{prefix}{{k}}:lock"
        await b.client.set(lock, "dead-leader", px=300)
        work = Work(b.client, prefix + "calls")
        work.release.set()
        result = await Coalescer[Any](backend=b).run("k", work)
        await b.aclose()
        return result, b

    result, b = run(main)
    assert result == {"answer": 42, "call": 1}
    assert b.takeovers == 1


def test_cancelled_leader_releases_its_lock_at_once(prefix: str) -> None:
    async def main() -> tuple[Any, bool]:
        a, b = backend(prefix, lock_ttl="30s"), backend(prefix, lock_ttl="30s")
        work = Work(a.client, prefix + "calls")
        lead = asyncio.ensure_future(Coalescer[Any](backend=a).run("k", work))
        await until(lambda: _exists(a.client, prefix + "calls"))
        follow = asyncio.ensure_future(Coalescer[Any](backend=b, timeout="10s").run("k", work))
        await until(lambda: _true(len(b._waker._events) == 1))
        lead.cancel()
        work.release.set()
        result = await asyncio.wait_for(follow, 10)  # far less than the 30 s lock
        await a.aclose()
        await b.aclose()
        return result, lead.cancelled()

    result, cancelled = run(main)
    assert cancelled
    assert result["call"] == 2


def test_lost_wake_up_message_is_covered_by_polling(prefix: str) -> None:
    async def main() -> Any:
        a, b = backend(prefix), backend(prefix, poll_max="50ms")
        b._waker._channel = prefix + "nobody-publishes-here"
        work = Work(a.client, prefix + "calls")
        lead = asyncio.ensure_future(Coalescer[Any](backend=a).run("k", work))
        await until(lambda: _exists(a.client, prefix + "calls"))
        follow = asyncio.ensure_future(Coalescer[Any](backend=b).run("k", work))
        await until(lambda: _true(len(b._waker._events) == 1))
        work.release.set()
        out = await asyncio.wait_for(asyncio.gather(lead, follow), 10)
        await a.aclose()
        await b.aclose()
        return out

    first, second = run(main)
    assert first == second == {"answer": 42, "call": 1}


def test_follower_wait_is_bounded(prefix: str) -> None:
    async def main() -> None:
        b = backend(prefix)
        await b.client.set(f"{prefix}{{k}}:lock", "slow-leader", px=60_000)
        try:
            with pytest.raises(CoalesceTimeout):
                await Coalescer[Any](backend=b, timeout=0.2).run("k", Work(b.client, "x"))
        finally:
            await b.aclose()

    run(main)


def test_odd_keys_are_hashed_and_values_round_trip(prefix: str) -> None:
    async def main() -> tuple[Any, list[bytes]]:
        b = backend(prefix, codec=PickleCodec())

        async def value() -> tuple[int, bytes]:
            return (1, b"\x00raw")

        odd = "user:ünïcode key\nwith {braces} and spaces" * 5
        result = await b.run(odd, value, ttl=60, timeout=5)
        cached = await b.run(odd, value, ttl=60, timeout=5)
        keys = [k async for k in b.client.scan_iter(match=prefix + "*")]
        await b.aclose()
        return (result, cached), keys

    (result, cached), keys = run(main)
    assert result == cached == (1, b"\x00raw")  # pickle keeps tuples and bytes
    assert len(keys) == 1
    assert keys[0].startswith(prefix.encode() + b"{h:")
    assert len(keys[0]) < 120


def test_json_codec_refuses_unencodable_results_clearly(prefix: str) -> None:
    async def main() -> None:
        b = backend(prefix)

        async def value() -> object:
            return object()

        try:
            with pytest.raises(GuardError, match="codec"):
                await b.run("k", value, ttl=60, timeout=5)
        finally:
            await b.aclose()

    run(main)


def test_a_value_written_by_another_codec_fails_clearly(prefix: str) -> None:
    async def main() -> None:
        writer, reader = backend(prefix, codec=PickleCodec()), backend(prefix)

        async def value() -> set[int]:
            return {1, 2}

        try:
            await writer.run("k", value, ttl=60, timeout=5)
            with pytest.raises(GuardError, match="does not decode with JsonCodec"):
                await reader.run("k", value, ttl=60, timeout=5)
        finally:
            await writer.aclose()
            await reader.aclose()

    run(main)


def test_redis_down_fails_open_or_closed_as_configured() -> None:
    port = free_port()  # nothing listens there
    calls = 0

    async def value() -> str:
        nonlocal calls
        calls += 1
        return "computed locally"

    async def main() -> None:
        open_ = RedisCoalesceBackend.from_url(f"redis://127.0.0.1:{port}/0")
        assert await open_.run("k", value, ttl=60, timeout=5) == "computed locally"
        closed = RedisCoalesceBackend.from_url(f"redis://127.0.0.1:{port}/0", fail_open=False)
        with pytest.raises(GuardError, match="Redis unavailable"):
            await closed.run("k", value, ttl=60, timeout=5)
        await open_.aclose()
        await closed.aclose()

    run(main)
    assert calls == 1


# -- two app processes sharing Redis ---------------------------------------------------


def start(prefix: str, lock_ttl: str = "5") -> Server:
    port = free_port()
    env = {"REDIS_URL": REDIS_URL, "COALESCE_PREFIX": prefix, "COALESCE_LOCK_TTL": lock_ttl}
    server = Server(uvicorn_argv("coalesce_app:app", port), port, env=env)
    server.wait_ready()
    return server


@pytest.fixture
def servers(prefix: str) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        started += [start(prefix, lock_ttl="1"), start(prefix, lock_ttl="1")]
        yield started
    finally:
        for s in started:
            s.stop()


async def fetch_all(urls: list[str], timeout: float = 60) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        return await asyncio.gather(*(client.get(u) for u in urls))


def test_two_processes_thousand_requests_one_backend_call(
    prefix: str, servers: list[Server]
) -> None:
    urls = [f"{servers[i % 2].url}/work?k=shared&first_delay=1.5" for i in range(1000)]
    responses = run(lambda: fetch_all(urls))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["call"] for r in responses} == {1}
    assert redis.Redis.from_url(REDIS_URL).get(prefix + "calls:shared") == b"1"


def test_two_processes_leader_failure_reaches_both(prefix: str, servers: list[Server]) -> None:
    urls = [f"{servers[i % 2].url}/work?k=bad&fail=1&first_delay=1" for i in range(100)]
    responses = run(lambda: fetch_all(urls))
    assert {r.status_code for r in responses} == {502}
    errors = {r.json()["error"] for r in responses}
    assert errors == {"ValueError", "CoalescedCallError"}  # here: the exception; there: a copy
    assert all("backend failed for bad" in r.json()["message"] for r in responses)
    assert redis.Redis.from_url(REDIS_URL).get(prefix + "calls:bad") == b"1"


def test_killed_leader_process_is_replaced_after_lock_expiry(
    prefix: str, servers: list[Server]
) -> None:
    a, b = servers
    sync = redis.Redis.from_url(REDIS_URL)

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(client.get(f"{a.url}/work?k=crash&first_delay=60"))
            for _ in range(500):
                if sync.get(prefix + "calls:crash") == b"1":
                    break
                await asyncio.sleep(0.01)
            follower = asyncio.ensure_future(client.get(f"{b.url}/work?k=crash&delay=0.1"))
            await asyncio.sleep(0.2)  # b is now waiting on a's lock
            os.kill(a.proc.pid, signal.SIGKILL)
            response = await asyncio.wait_for(follower, 20)
            leader.cancel()
            await asyncio.gather(leader, return_exceptions=True)
            return response

    response = run(main)
    assert response.status_code == 200
    assert response.json()["call"] == 2
    assert response.json()["pid"] == b.proc.pid


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))


async def _true(value: bool) -> bool:
    return value
