"""The concurrency limiter: cap, FIFO queue, queue timeout, cancellation, adaptive limits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError
from scalewise.guard.adaptive import AIMDLimit
from scalewise.guard.concurrency import (
    Admission,
    ConcurrencyLimiter,
    Outcome,
    SyncConcurrencyLimiter,
)


async def settle(condition: Callable[[], bool], rounds: int = 200) -> None:
    """Let other tasks run until ``condition`` holds (bounded; no wall-clock sleeps)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_admits_up_to_the_limit_then_refuses_at_once() -> None:
    limiter = ConcurrencyLimiter(2, max_queue=0)
    first, second, third = (limiter.try_acquire() for _ in range(3))
    assert [a.outcome for a in (first, second, third)] == [
        Outcome.ADMITTED,
        Outcome.ADMITTED,
        Outcome.SHED,
    ]
    assert (first.inflight, second.inflight, third.inflight) == (1, 2, 2)
    assert limiter.inflight == 2
    limiter.release(first)
    assert limiter.try_acquire().admitted
    stats = limiter.stats()
    assert (stats.admitted, stats.shed, stats.inflight) == (3, 1, 2)


def test_release_is_idempotent_and_a_refusal_holds_nothing() -> None:
    limiter = ConcurrencyLimiter(1, max_queue=0)
    admitted = limiter.try_acquire()
    refused = limiter.try_acquire()
    limiter.release(refused)
    assert limiter.inflight == 1
    limiter.release(admitted)
    limiter.release(admitted)
    assert limiter.inflight == 0


def test_waiters_are_admitted_in_arrival_order() -> None:
    async def go() -> list[int]:
        limiter = ConcurrencyLimiter(1, max_queue=5, queue_timeout=30)
        holder = await limiter.wait()
        order: list[int] = []

        async def waiter(i: int) -> None:
            admission = await limiter.wait()
            assert admission.admitted
            assert admission.queued
            order.append(i)
            limiter.release(admission)

        tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
        await settle(lambda: limiter.waiting == 5)
        # A newcomer must not overtake the queue even at the instant a slot frees up.
        limiter.release(holder)
        assert not limiter.try_acquire().admitted
        await asyncio.gather(*tasks)
        return order

    assert run(go()) == [0, 1, 2, 3, 4]


def test_a_full_queue_sheds_and_a_long_wait_times_out() -> None:
    async def go() -> tuple[list[Admission], ConcurrencyLimiter]:
        limiter = ConcurrencyLimiter(1, max_queue=2, queue_timeout=0.02)
        holder = await limiter.wait()
        results = await asyncio.gather(*(limiter.wait() for _ in range(4)))
        limiter.release(holder)
        return list(results), limiter

    results, limiter = run(go())
    outcomes = sorted(a.outcome.value for a in results)
    assert outcomes == ["shed", "shed", "timed_out", "timed_out"]
    assert all(a.queued and a.waited > 0 for a in results if a.outcome is Outcome.TIMED_OUT)
    stats = limiter.stats()
    assert (stats.shed, stats.timed_out, stats.queued, stats.waiting) == (2, 2, 2, 0)
    assert limiter.inflight == 0


def test_zero_queue_timeout_refuses_without_waiting() -> None:
    async def go() -> Admission:
        limiter = ConcurrencyLimiter(1, max_queue=3, queue_timeout=0)
        await limiter.wait()
        return await limiter.wait()

    assert run(go()).outcome is Outcome.TIMED_OUT


def test_a_cancelled_waiter_leaves_the_queue_and_never_leaks_a_slot() -> None:
    async def go() -> ConcurrencyLimiter:
        limiter = ConcurrencyLimiter(1, max_queue=3, queue_timeout=30)
        holder = await limiter.wait()
        task = asyncio.create_task(limiter.wait())
        await settle(lambda: limiter.waiting == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.waiting == 0
        # Granted, then cancelled before it could run: the slot must come back.
        task = asyncio.create_task(limiter.wait())
        await settle(lambda: limiter.waiting == 1)
        limiter.release(holder)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return limiter

    limiter = run(go())
    assert (limiter.inflight, limiter.waiting) == (0, 0)


def test_acquire_context_releases_on_error_and_marks_timeouts_as_drops() -> None:
    clock = ManualClock()
    limit = AIMDLimit(10, min_limit=2, latency_threshold=60)
    limiter = ConcurrencyLimiter(limit, clock=clock)

    async def go() -> None:
        with pytest.raises(RuntimeError):
            async with limiter.acquire():
                raise RuntimeError("app bug")
        assert limit.limit == 10  # an exception says nothing about load: not sampled
        with pytest.raises(TimeoutError):
            async with limiter.acquire():
                raise TimeoutError
        assert limit.limit == 9  # multiplicative decrease on a drop

    run(go())
    assert limiter.inflight == 0


def test_an_adaptive_limit_shrinks_when_requests_slow_down() -> None:
    clock = ManualClock()
    limit = AIMDLimit(4, min_limit=1, latency_threshold=0.5)
    limiter = ConcurrencyLimiter(limit, max_queue=0, clock=clock)
    for _ in range(4):
        admissions = [limiter.try_acquire() for _ in range(limiter.limit)]
        clock.advance(1.0)  # each took 1 s, over the 0.5 s threshold
        for a in admissions:
            limiter.release(a)
    assert limiter.limit == 1
    assert limiter.try_acquire().admitted
    assert not limiter.try_acquire().admitted


def test_a_growing_limit_admits_waiters_at_once() -> None:
    clock = ManualClock()
    limit = AIMDLimit(2, latency_threshold=1.0)

    async def go() -> int:
        limiter = ConcurrencyLimiter(limit, max_queue=4, queue_timeout=30, clock=clock)
        first, second = await limiter.wait(), await limiter.wait()
        waiters = [asyncio.create_task(limiter.wait()) for _ in range(2)]
        await settle(lambda: limiter.waiting == 2)
        clock.advance(0.01)
        limiter.release(first)  # fast, with the limit in use: limit 2 → 3, two slots free
        results = await asyncio.gather(*waiters)
        assert all(r.admitted for r in results)
        limiter.release(second)
        return limiter.limit

    assert run(go()) >= 3


def test_retry_after_header_is_whole_seconds_and_never_zero() -> None:
    for seconds, header in ((0.2, "1"), (1.0, "1"), (1.5, "2"), (30, "30")):
        limiter = ConcurrencyLimiter(1, max_queue=0, retry_after=seconds)
        limiter.try_acquire()
        assert limiter.try_acquire().retry_after_header == header


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -3}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": 2, "max_queue": -1}, "max_queue"),
        ({"limit": 2, "queue_timeout": "soon"}, "queue_timeout"),
        ({"limit": 2, "queue_timeout": -1}, "queue_timeout"),
        ({"limit": 2, "retry_after": 0}, "retry_after"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConcurrencyLimiter(**kwargs)
    assert info.value.path == field
    assert info.value.source == "ConcurrencyLimiter"


def test_human_units_and_default_queue() -> None:
    limiter = ConcurrencyLimiter(8, queue_timeout="250ms", retry_after="2s")
    assert (limiter.queue_timeout, limiter.retry_after, limiter.max_queue) == (0.25, 2.0, 2)


def test_sync_limiter_hands_a_freed_slot_to_a_waiting_thread() -> None:
    limiter = SyncConcurrencyLimiter(1, max_queue=1, queue_timeout=30)
    holder = limiter.wait()
    result: list[Admission] = []
    thread = threading.Thread(target=lambda: result.append(limiter.wait()))
    thread.start()
    for _ in range(1000):  # bounded: the thread enqueues almost at once
        if limiter.waiting == 1:
            break
        threading.Event().wait(0.001)
    assert limiter.try_acquire().outcome is Outcome.SHED
    limiter.release(holder)
    thread.join(timeout=10)
    assert result[0].admitted
    assert result[0].queued
    limiter.release(result[0])
    assert (limiter.inflight, limiter.waiting) == (0, 0)


def test_sync_limiter_times_out_and_sheds() -> None:
    limiter = SyncConcurrencyLimiter(1, max_queue=1, queue_timeout=0.01)
    with limiter.acquire() as held:
        assert held.admitted
        assert limiter.wait().outcome is Outcome.TIMED_OUT
    assert limiter.stats().timed_out == 1
    assert limiter.inflight == 0
