"""k6 executor math: arrival schedules, ramps and execution segments."""

from __future__ import annotations

import itertools

import pytest

from scalewise.loadtest.executors import (
    ConstantArrivalRate,
    ConstantVus,
    RampingArrivalRate,
    RampingVus,
    Segment,
    SharedIterations,
    Stage,
)


def test_constant_arrival_rate_spaces_iterations_evenly() -> None:
    ex = ConstantArrivalRate(rate=100, time_unit=1.0, run_for=2.0)
    times = list(ex.start_times())
    assert len(times) == 200
    assert times[0] == 0.0
    assert times[1] == pytest.approx(0.01)
    assert times[-1] < 2.0


def test_time_unit_scales_the_rate() -> None:
    ex = ConstantArrivalRate(rate=30, time_unit=60.0, run_for=60.0)
    assert len(list(ex.start_times())) == 30


def test_ramping_arrival_rate_matches_the_integral_of_its_rate() -> None:
    ex = RampingArrivalRate(
        start_rate=0, stages=(Stage(10, 100), Stage(10, 100), Stage(5, 0)), time_unit=1.0
    )
    times = list(ex.start_times())
    # 0→100 over 10 s = 500, 100 for 10 s = 1000, 100→0 over 5 s = 250.
    assert len(times) == pytest.approx(1750, abs=1)
    assert sum(1 for t in times if t < 10) == pytest.approx(500, abs=1)
    assert ex.cumulative(10) == pytest.approx(500)
    assert ex.rate_at(5) == pytest.approx(50)
    assert all(a <= b for a, b in itertools.pairwise(times))


def test_segments_partition_arrivals_exactly() -> None:
    ex = RampingArrivalRate(start_rate=5, stages=(Stage(4, 50),))
    whole = list(ex.start_times())
    parts = [list(ex.split(i, 3).start_times()) for i in range(3)]
    assert sorted(itertools.chain(*parts)) == whole


def test_segment_shares_sum_to_the_total() -> None:
    for total in (0, 1, 7, 10, 11):
        assert sum(Segment(i, 4).share(total) for i in range(4)) == total
    assert str(Segment(0, 2)) == "1/2"


def test_vus_and_iterations_split_across_segments() -> None:
    assert [ConstantVus(vus=5).split(i, 2).local_vus for i in range(2)] == [3, 2]
    shared = SharedIterations(vus=4, iterations=9)
    assert [shared.split(i, 2).local_iterations for i in range(2)] == [5, 4]


def test_ramping_vus_interpolates_between_stages() -> None:
    ex = RampingVus(start_vus=0, stages=(Stage(10, 10), Stage(10, 0)))
    assert ex.target_vus(0) == 0
    assert ex.target_vus(5) == 5
    assert ex.target_vus(15) == 5
    assert ex.target_vus(25) == 0
    assert ex.duration == 20
    assert ex.max_vus == 10


def test_every_executor_is_bounded_by_duration_and_graceful_stop() -> None:
    ex = ConstantVus(vus=1, run_for=10, start_time=5, graceful_stop=2)
    assert ex.end == 17
