"""Single-flight in one process: one call for many waiters, errors, timeouts, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from scalewise.clock import ManualClock
from scalewise.errors import ConfigError, GuardError
from scalewise.guard.coalesce import Coalescer, CoalesceTimeout, coalesce
from scalewise.metrics.recorder import Recorder


class Backend:
    """A backend call we can hold open and count; released by an Event, not a sleep."""

    def __init__(self, fail: int = 0) -> None:
        self.calls = 0
        self.fail = fail  # the first `fail` calls raise
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        n = self.calls
        self.started.set()
        await self.release.wait()
        if n <= self.fail:
            raise ValueError(f"backend failed (call {n})")
        return f"result {n}"


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_thousand_concurrent_identical_calls_make_one_backend_call() -> None:
    async def main() -> tuple[list[str], Coalescer[str], Backend]:
        backend, c = Backend(), Coalescer[str]()
        tasks = [asyncio.ensure_future(c.run("k", backend)) for _ in range(1000)]
        await backend.started.wait()
        await settle()
        backend.release.set()
        return await asyncio.gather(*tasks), c, backend

    results, c, backend = run(main)
    assert backend.calls == 1
    assert set(results) == {"result 1"}
    s = c.stats()
    assert (s.calls, s.coalesced, s.misses, s.inflight, s.entries) == (1, 999, 1000, 0, 1)


def test_result_is_cached_for_ttl_then_recomputed() -> None:
    clock = ManualClock()

    async def main() -> list[str]:
        backend = Backend()
        backend.release.set()
        c = Coalescer[str](ttl="30s", clock=clock)
        first = await c.run("k", backend)
        clock.advance(29)
        second = await c.run("k", backend)
        clock.advance(2)
        third = await c.run("k", backend)
        return [first, second, third]

    assert run(main) == ["result 1", "result 1", "result 2"]


def test_different_keys_do_not_coalesce() -> None:
    async def main() -> int:
        backend = Backend()
        backend.release.set()
        c = Coalescer[str]()
        await asyncio.gather(c.run("a", backend), c.run("b", backend))
        return backend.calls

    assert run(main) == 2


def test_leader_failure_reaches_every_follower_and_is_not_cached() -> None:
    async def main() -> tuple[list[Any], Coalescer[str], Backend]:
        backend, c = Backend(fail=1), Coalescer[str]()
        tasks = [asyncio.ensure_future(c.run("k", backend)) for _ in range(50)]
        await backend.started.wait()
        backend.release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        outcomes.append(await c.run("k", backend))  # not cached: a new call succeeds
        return outcomes, c, backend

    outcomes, c, backend = run(main)
    assert all(isinstance(o, ValueError) for o in outcomes[:50])
    assert outcomes[50] == "result 2"
    assert backend.calls == 2
    assert c.stats().errors == 1


def test_on_error_retry_lets_one_follower_lead_a_fresh_call() -> None:
    async def main() -> tuple[list[Any], Backend]:
        backend, c = Backend(fail=1), Coalescer[str](on_error="retry")
        tasks = [asyncio.ensure_future(c.run("k", backend)) for _ in range(20)]
        await backend.started.wait()
        backend.release.set()
        return await asyncio.gather(*tasks, return_exceptions=True), backend

    outcomes, backend = run(main)
    assert isinstance(outcomes[0], ValueError)  # the leader always gets its own error
    assert outcomes[1:] == ["result 2"] * 19
    assert backend.calls == 2


def test_error_ttl_caches_failures_briefly() -> None:
    clock = ManualClock()

    async def main() -> list[Any]:
        backend = Backend(fail=1)
        backend.release.set()
        c = Coalescer[str](error_ttl="5s", clock=clock)
        out: list[Any] = []
        for step in (0, 1, 5):
            clock.advance(step)
            try:
                out.append(await c.run("k", backend))
            except ValueError as exc:
                out.append(str(exc))
        return out

    assert run(main) == ["backend failed (call 1)", "backend failed (call 1)", "result 2"]


def test_follower_times_out_with_a_scalewise_error_and_leader_keeps_going() -> None:
    async def main() -> tuple[BaseException, str, Coalescer[str]]:
        backend, c = Backend(), Coalescer[str](timeout=0.02)
        leader = asyncio.ensure_future(c.run("k", backend))
        await backend.started.wait()
        with pytest.raises(CoalesceTimeout) as caught:
            await c.run("k", backend)
        backend.release.set()
        return caught.value, await leader, c

    error, leader_result, c = run(main)
    assert isinstance(error, GuardError)
    assert isinstance(error, TimeoutError)
    assert "0.02s" in str(error)
    assert leader_result == "result 1"
    assert c.stats().timeouts == 1


def test_cancelling_the_leader_does_not_strand_followers() -> None:
    async def main() -> tuple[list[str], Backend]:
        backend, c = Backend(), Coalescer[str]()
        leader = asyncio.ensure_future(c.run("k", backend))
        await backend.started.wait()
        followers = [asyncio.ensure_future(c.run("k", backend)) for _ in range(10)]
        await settle()
        leader.cancel()
        await settle()
        assert leader.cancelled()
        backend.release.set()
        return await asyncio.gather(*followers), backend

    results, backend = run(main)
    assert results == ["result 1"] * 10
    assert backend.calls == 1


def test_call_is_cancelled_when_every_waiter_has_gone() -> None:
    async def main() -> tuple[bool, Coalescer[str]]:
        cancelled = asyncio.Event()

        async def slow() -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        c = Coalescer[str]()
        task = asyncio.ensure_future(c.run("k", slow))
        await settle()
        task.cancel()
        await asyncio.wait_for(cancelled.wait(), 5)
        await settle()
        return cancelled.is_set(), c

    was_cancelled, c = run(main)
    assert was_cancelled
    assert c.stats().inflight == 0


def test_a_call_that_cancels_itself_leaves_followers_a_clear_outcome() -> None:
    async def main() -> list[Any]:
        calls = 0
        gate = asyncio.Event()

        async def flaky() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            if calls == 1:
                raise asyncio.CancelledError  # e.g. a library cancelling its own work
            return "second try"

        c = Coalescer[str]()
        leader = asyncio.ensure_future(c.run("k", flaky))
        await settle()
        follower = asyncio.ensure_future(c.run("k", flaky))
        await settle()
        gate.set()
        out = await asyncio.gather(leader, follower, return_exceptions=True)
        return [type(o).__name__ if isinstance(o, BaseException) else o for o in out]

    assert run(main) == ["CancelledError", "second try"]


def test_stale_while_revalidate_serves_stale_and_refreshes_once() -> None:
    clock = ManualClock()

    async def main() -> tuple[list[str], Backend]:
        backend = Backend()
        backend.release.set()
        c = Coalescer[str](ttl="10s", stale_while_revalidate="60s", clock=clock)
        await c.run("k", backend)
        clock.advance(11)
        backend.release.clear()
        stale = await asyncio.gather(*(c.run("k", backend) for _ in range(100)))
        assert backend.calls == 2  # exactly one refresh started
        backend.release.set()
        await settle()
        fresh = await c.run("k", backend)
        return [*set(stale), fresh], backend

    values, backend = run(main)
    assert values == ["result 1", "result 2"]
    assert backend.calls == 2


def test_ttl_zero_coalesces_but_does_not_cache() -> None:
    async def main() -> int:
        backend = Backend()
        c = Coalescer[str](ttl=0)
        tasks = [asyncio.ensure_future(c.run("k", backend)) for _ in range(10)]
        await backend.started.wait()
        backend.release.set()
        await asyncio.gather(*tasks)
        await c.run("k", backend)
        return backend.calls

    assert run(main) == 2


def test_decorator_with_key_template_and_recorder_counts() -> None:
    recorder = Recorder(clock=ManualClock())
    calls: list[int] = []

    @coalesce(key="user:{user_id}", ttl="30s", recorder=recorder)
    async def profile(user_id: int, verbose: bool = False) -> dict[str, int]:
        calls.append(user_id)
        await asyncio.sleep(0)
        return {"id": user_id}

    async def main() -> list[dict[str, int]]:
        first = await asyncio.gather(*(profile(7) for _ in range(10)), profile(8))
        return [*first, await profile(7, verbose=True)]

    results = run(main)
    assert calls == [7, 8]
    assert results[0] == {"id": 7}
    assert profile.key_for(7).endswith(":user:7")  # type: ignore[attr-defined]
    counters = recorder.table.counters
    assert counters["cache_misses"] == 11
    assert counters["cache_coalesced"] == 9
    assert counters["cache_hits"] == 1
    assert counters["cache_calls"] == 2


def test_decorator_default_key_uses_all_arguments() -> None:
    calls: list[tuple[int, str]] = []

    @coalesce()
    async def f(a: int, b: str = "x") -> str:
        calls.append((a, b))
        return f"{a}{b}"

    async def main() -> list[str]:
        return [await f(1), await f(1, "x"), await f(1, b="y"), await f(2)]

    assert run(main) == ["1x", "1x", "1y", "2x"]
    assert calls == [(1, "x"), (1, "y"), (2, "x")]


def test_decorator_refuses_unstable_default_keys_and_sync_functions() -> None:
    @coalesce()
    async def f(obj: object) -> int:
        return 1

    with pytest.raises(ConfigError, match="key="):
        run(lambda: f(object()))

    def sync() -> int:
        return 1

    with pytest.raises(ConfigError, match="async"):
        coalesce()(sync)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"timeout": "never"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"on_error": "x"}, "on_error"),
        ({"retries": -1}, "retries"),
        ({"max_entries": 0}, "max_entries"),
        ({"ttl": "x"}, "ttl"),
    ],
)
def test_bad_settings_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Coalescer(**kw)
