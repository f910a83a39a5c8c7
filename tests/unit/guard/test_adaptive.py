"""Adaptive limits: AIMD and Gradient2 follow Netflix's rules, stay bounded, move with latency."""

from __future__ import annotations

from typing import Any

import pytest

from scalewise.errors import ConfigError
from scalewise.guard.adaptive import (
    AdaptiveLimit,
    AIMDLimit,
    FixedLimit,
    Gradient2Limit,
    WindowedLimit,
    adaptive_limit,
)


def test_aimd_grows_by_one_only_while_the_limit_is_in_use() -> None:
    limit = AIMDLimit(10, max_limit=12, latency_threshold=1.0)
    assert limit.sample(0.1, inflight=4, dropped=False, now=0) == 10  # app-limited: no growth
    assert limit.sample(0.1, inflight=5, dropped=False, now=0) == 11
    assert limit.sample(0.1, inflight=11, dropped=False, now=0) == 12
    assert limit.sample(0.1, inflight=12, dropped=False, now=0) == 12  # max_limit


def test_aimd_backs_off_on_drops_and_slow_requests_down_to_min() -> None:
    limit = AIMDLimit(100, min_limit=5, backoff_ratio=0.5, latency_threshold=1.0)
    assert limit.sample(0.1, inflight=1, dropped=True, now=0) == 50
    assert limit.sample(2.0, inflight=1, dropped=False, now=0) == 25
    for _ in range(10):
        limit.sample(2.0, inflight=1, dropped=False, now=0)
    assert limit.limit == 5


def test_aimd_always_drops_by_at_least_one() -> None:
    limit = AIMDLimit(3, backoff_ratio=0.9)  # int(3 × 0.9) = 2, but 9 → 8 needs the min rule
    assert limit.sample(0, inflight=0, dropped=True, now=0) == 2
    big = AIMDLimit(9, backoff_ratio=0.95)
    assert big.sample(0, inflight=0, dropped=True, now=0) == 8


def feed(limit: AdaptiveLimit, rtt: float, n: int, inflight: int = 1000) -> int:
    for _ in range(n):
        limit.sample(rtt, inflight, False, 0.0)
    return limit.limit


def test_gradient2_grows_while_latency_is_flat_and_shrinks_when_it_climbs() -> None:
    limit = Gradient2Limit(20, min_limit=4, max_limit=100)
    grown = feed(limit, 0.05, 50)
    assert grown > 20
    shrunk = feed(limit, 0.5, 20)  # ten times slower: queueing has begun
    assert shrunk < grown / 2
    assert shrunk >= 4


def test_gradient2_one_update_never_cuts_more_than_half_times_smoothing() -> None:
    limit = Gradient2Limit(100, max_limit=200, smoothing=1.0, queue_size=0)
    feed(limit, 0.01, 10)  # long RTT ≈ 10 ms
    assert limit.sample(10.0, 1000, False, 0.0) == 50  # gradient clamped at 0.5


def test_gradient2_holds_still_when_app_limited() -> None:
    limit = Gradient2Limit(40)
    assert feed(limit, 0.05, 100, inflight=10) == 40
    assert feed(limit, 5.0, 100, inflight=10) == 40


def test_gradient2_tolerates_latency_within_tolerance() -> None:
    limit = Gradient2Limit(20, tolerance=2.0, queue_size=0)
    feed(limit, 0.1, 10)  # warm up the long average at 100 ms
    before = limit.limit
    assert feed(limit, 0.18, 3) == before  # < 2× the baseline: no cut


def test_gradient2_recovers_after_load_ends() -> None:
    limit = Gradient2Limit(50, min_limit=5, max_limit=500)
    feed(limit, 0.05, 20)
    low = feed(limit, 1.0, 30)  # a burst of overload: twenty times slower
    assert low < 20
    assert feed(limit, 0.05, 100) > low * 2


def test_windowed_limit_passes_one_averaged_sample_per_window() -> None:
    seen: list[tuple[float, int, bool, float]] = []

    class Spy(FixedLimit):
        def sample(self, rtt: float, inflight: int, dropped: bool, now: float) -> int:
            seen.append((rtt, inflight, dropped, now))
            return self.limit

    windowed = WindowedLimit(Spy(10), min_window=1.0, max_window=1.0, window_size=3)
    windowed.sample(0.1, 1, False, 0.0)  # the first sample opens the first window
    for i, rtt in enumerate((0.1, 0.2, 0.3, 0.00001)):  # the last is below min_rtt: ignored
        windowed.sample(rtt, i + 1, i == 1, 0.5)
    assert seen == []
    windowed.sample(0.4, 2, False, 1.5)  # past the window end: closes it
    assert len(seen) == 1
    assert seen[0][0] == pytest.approx(0.25)
    assert seen[0][1:] == (3, True, 1.5)
    windowed.sample(0.1, 1, False, 3.0)  # a window of one sample is not enough
    assert len(seen) == 1


def test_factory_builds_each_algorithm_and_rejects_others() -> None:
    assert isinstance(adaptive_limit("aimd", initial_limit=7), AIMDLimit)
    gradient = adaptive_limit("gradient2", initial_limit=7, window=0.5)
    assert isinstance(gradient, WindowedLimit)
    assert gradient.limit == 7
    with pytest.raises(ConfigError) as info:
        adaptive_limit("vegas")
    assert info.value.path == "algorithm"


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (AIMDLimit, {"initial_limit": 0}, "initial_limit"),
        (AIMDLimit, {"min_limit": 0}, "min_limit"),
        (AIMDLimit, {"min_limit": 10, "max_limit": 5}, "max_limit"),
        (AIMDLimit, {"backoff_ratio": 1.0}, "backoff_ratio"),
        (AIMDLimit, {"backoff_ratio": 0.2}, "backoff_ratio"),
        (AIMDLimit, {"latency_threshold": 0}, "latency_threshold"),
        (Gradient2Limit, {"smoothing": 0}, "smoothing"),
        (Gradient2Limit, {"smoothing": 1.5}, "smoothing"),
        (Gradient2Limit, {"tolerance": 0.5}, "tolerance"),
        (Gradient2Limit, {"queue_size": -1}, "queue_size"),
        (Gradient2Limit, {"long_window": True}, "long_window"),
    ],
)
def test_bad_parameters_name_the_field(cls: Any, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.path == field


def test_initial_limit_is_clamped_into_bounds() -> None:
    assert AIMDLimit(500, max_limit=50).limit == 50
    assert Gradient2Limit(1, min_limit=10).limit == 10


def test_broken_durations_do_not_poison_gradient2() -> None:
    limit = Gradient2Limit(20)
    for bad in (0.0, float("nan"), float("inf"), -1.0):
        assert limit.sample(bad, 100, False, 0.0) == 20
    assert limit.long_rtt == 0.0
