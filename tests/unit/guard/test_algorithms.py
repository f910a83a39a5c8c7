"""GCRA as a pure function, and Rate parsing with its errors."""

from __future__ import annotations

import math
import random

import pytest

from scalewise.errors import ConfigError
from scalewise.guard.algorithms import Rate, gcra, outcome_after


def run(rate: Rate, times: list[float], cost: int = 1) -> list[bool]:
    tat: float | None = None
    out = []
    for now in times:
        allowed, tat, *_ = gcra(tat, now, cost, rate)
        out.append(allowed)
    return out


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("100/minute", 100, 60.0),
        ("10/s", 10, 1.0),
        ("1000/hour", 1000, 3600.0),
        ("50/10s", 50, 10.0),
        ("5 per day", 5, 86400.0),
        (" 7 / 2 minutes ", 7, 120.0),
        ("3/0.5s", 3, 0.5),
    ],
)
def test_parse(text: str, limit: int, period: float) -> None:
    rate = Rate.parse(text)
    assert (rate.limit, rate.period, rate.burst) == (limit, period, limit)
    assert math.isclose(rate.emission_interval, period / limit)


@pytest.mark.parametrize(
    "text",
    ["0/minute", "-5/s", "ten/minute", "10/fortnight", "10", "", "10/0s", "1.5/s", "9999999/ms"],
)
def test_parse_rejects_garbage_naming_the_field(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Rate.parse(text, field_name="guards.rate_limit.default")
    assert info.value.path == "guards.rate_limit.default"
    assert info.value.got == text


def test_rate_rejects_bad_numbers() -> None:
    with pytest.raises(ConfigError, match="burst"):
        Rate(10, 1.0, burst=-1)
    with pytest.raises(ConfigError, match="period"):
        Rate(10, float("inf"))
    with pytest.raises(ConfigError, match="limit"):
        Rate(True, 1.0)
    with pytest.raises(ConfigError, match="1,000,000"):
        Rate(2_000_000, 1.0)
    with pytest.raises(ConfigError):
        Rate.parse(None)  # type: ignore[arg-type]


def test_burst_then_steady_rate() -> None:
    rate = Rate.parse("10/s")  # burst 10, then one every 100 ms
    assert run(rate, [0.0] * 11) == [True] * 10 + [False]
    assert run(rate, [0.0] * 10 + [0.099, 0.1, 0.1, 0.2]) == [True] * 10 + [
        False,
        True,
        False,
        True,
    ]


@pytest.mark.parametrize("burst", [0, 5, 1])
def test_admissions_in_any_span_are_bounded(burst: int) -> None:
    """A token bucket's promise: in any span of length L, at most burst + L/T admissions
    (strictly fewer refills than L/T fit in a half-open span), and over a long run the
    average is the rate itself."""
    rng = random.Random(7)
    rate = Rate(20, 60.0, burst)
    times = sorted(rng.uniform(0, 600) for _ in range(3000))
    admitted = [t for t, ok in zip(times, run(rate, times), strict=True) if ok]
    for span in (rate.period, rate.period / 2, 7.0):
        bound = rate.burst + math.ceil(span / rate.emission_interval) - 1
        for i, start in enumerate(admitted):
            assert sum(1 for t in admitted[i:] if t < start + span) <= bound
    # not over-strict either: 10 minutes of pressure use nearly the whole allowance (burst 1
    # wastes the refills that land between two random arrivals)
    assert len(admitted) >= 0.9 * 20 * 10
    assert len(admitted) <= rate.burst + 20 * 10


def test_separate_burst() -> None:
    rate = Rate(60, 60.0, burst=5)  # one a second, five at once
    assert run(rate, [0.0] * 6) == [True] * 5 + [False]
    assert rate.tolerance == pytest.approx(5.0)


def test_results_remaining_reset_retry() -> None:
    rate = Rate.parse("4/s")
    allowed, tat, remaining, reset, retry = gcra(None, 100.0, 1, rate)
    assert (allowed, tat, remaining, reset, retry) == (True, 100.25, 3, 0.25, 0.0)
    state: float | None = tat
    for _ in range(3):
        allowed, state, remaining, reset, retry = gcra(state, 100.0, 1, rate)
    assert (allowed, remaining, reset) == (True, 0, 1.0)
    allowed, same, remaining, reset, retry = gcra(state, 100.0, 1, rate)
    assert (allowed, same, remaining) == (False, state, 0)
    assert reset == pytest.approx(1.0)
    assert retry == pytest.approx(0.25)
    # after retry_after it is admitted, not a moment before
    assert not gcra(state, 100.0 + retry - 0.001, 1, rate)[0]
    assert gcra(state, 100.0 + retry, 1, rate)[0]


def test_cost_and_peek() -> None:
    rate = Rate.parse("10/s")
    allowed, tat, remaining, *_ = gcra(None, 0.0, 7, rate)
    assert (allowed, remaining) == (True, 3)
    allowed, tat2, remaining, _, retry = gcra(tat, 0.0, 4, rate)
    assert (allowed, tat2, remaining) == (False, tat, 3)
    assert retry == pytest.approx(0.1)
    assert gcra(tat, 0.0, 0, rate)[:3] == (True, tat, 3)  # cost 0 peeks


def test_idle_key_is_a_new_key() -> None:
    rate = Rate.parse("2/s")
    tat = gcra(gcra(None, 0.0, 1, rate)[1], 0.0, 1, rate)[1]
    assert gcra(tat, 50.0, 1, rate) == gcra(None, 50.0, 1, rate)


def test_outcome_after_matches_gcra() -> None:
    """What the Redis script reports (verdict, tat - now) rebuilds the same outcome."""
    rng = random.Random(3)
    rate = Rate(7, 3.0, burst=4)
    tat: float | None = None
    now = 0.0
    for _ in range(500):
        now += rng.expovariate(3.0)
        cost = rng.choice((0, 1, 1, 2))
        allowed, new_tat, remaining, reset, retry = gcra(tat, now, cost, rate)
        assert outcome_after(allowed, reset, cost, rate) == pytest.approx(
            (allowed, remaining, reset, retry)
        )
        tat = new_tat


def test_float_accumulation_does_not_change_the_count() -> None:
    for text in ("7/minute", "3/s", "1000/hour", "13/7s", "999/s"):
        rate = Rate.parse(text)
        assert run(rate, [12345.678] * (rate.limit + 1)) == [True] * rate.limit + [False]
