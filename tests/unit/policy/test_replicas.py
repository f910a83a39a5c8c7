"""HPA replica math against the worked examples of the Kubernetes HPA documentation."""

from __future__ import annotations

import pytest

from scalewise.errors import RuleError
from scalewise.policy.model import Horizontal, HPAPolicy, HPARules, HPATarget
from scalewise.policy.replicas import (
    HPAState,
    ReplicaCalculator,
    desired_replicas,
    metric_proposal,
    propose,
)

NO_WINDOW_DOWN = HPARules(0.0, "Max", (HPAPolicy("Percent", 100, 15.0),))
FREE_UP = HPARules(0.0, "Max", (HPAPolicy("Percent", 1000, 15.0),))


def _hz(**kw: object) -> Horizontal:
    base: dict[str, object] = {"targets": (HPATarget("cpu", 100.0),), "max_replicas": 100}
    base.update(kw)
    return Horizontal(**base)  # type: ignore[arg-type]


def _load(replicas: int, total: float) -> dict[str, float | None]:
    """Per-replica value when ``total`` units of load are spread over ``replicas``."""
    return {"cpu": total / replicas}


# -- the formula --------------------------------------------------------------------------


def test_doc_example_200m_against_100m_doubles_and_50m_halves() -> None:
    assert desired_replicas(1, [(200.0, 100.0)]) == 2
    assert desired_replicas(3, [(200.0, 100.0)]) == 6
    assert desired_replicas(4, [(50.0, 100.0)]) == 2


def test_ceil_rounds_partial_replicas_up() -> None:
    assert desired_replicas(3, [(150.0, 100.0)]) == 5  # 4.5 → 5
    assert desired_replicas(2, [(90.0, 100.0)]) == 2  # within tolerance
    assert desired_replicas(2, [(20.0, 100.0)]) == 1  # 0.4 → 1


def test_tolerance_keeps_current_count_near_ratio_one() -> None:
    assert desired_replicas(10, [(105.0, 100.0)]) == 10
    assert desired_replicas(10, [(95.0, 100.0)]) == 10
    assert desired_replicas(10, [(110.0, 100.0)]) == 10  # |1.1 − 1| = 0.1: within
    assert desired_replicas(10, [(111.0, 100.0)]) == 12  # 11.1 → 12
    assert desired_replicas(10, [(89.0, 100.0)]) == 9
    assert desired_replicas(10, [(105.0, 100.0)], tolerance=0.01) == 11


def test_float_noise_does_not_add_a_replica() -> None:
    # 10 × 1.2 is 12.000000000000002 in binary floating point.
    assert desired_replicas(10, [(120.0, 100.0)]) == 12
    assert metric_proposal(10, 0.6, 0.5) == 12


def test_several_metrics_take_the_largest_proposal() -> None:
    assert desired_replicas(4, [(50.0, 100.0), (300.0, 100.0), (100.0, 100.0)]) == 12


def test_from_zero_replicas_the_ratio_is_the_count() -> None:
    assert metric_proposal(0, 250.0, 100.0) == 3


def test_missing_metric_blocks_scale_down_but_not_scale_up() -> None:
    assert propose(4, [(None, 100.0), (50.0, 100.0)]) is None
    assert desired_replicas(4, [(None, 100.0), (50.0, 100.0)]) == 4
    assert desired_replicas(4, [(None, 100.0), (200.0, 100.0)]) == 8
    assert desired_replicas(4, [(None, 100.0)]) == 4
    assert desired_replicas(4, [(float("nan"), 100.0)]) == 4
    assert desired_replicas(4, []) == 4


def test_a_target_must_be_positive() -> None:
    with pytest.raises(RuleError, match="positive"):
        metric_proposal(2, 1.0, 0.0)


# -- bounds -------------------------------------------------------------------------------


def test_min_and_max_replicas_bound_the_result() -> None:
    calc = ReplicaCalculator(_hz(min_replicas=2, max_replicas=5, scale_up=FREE_UP))
    d = calc.step(HPAState(), 3, _load(3, 3000.0), now=0.0)
    assert (d.proposal, d.desired, d.reason) == (30, 5, "TooManyReplicas")
    d = calc.step(HPAState(), 7, _load(7, 700.0), now=0.0)
    assert (d.desired, d.reason) == (5, "TooManyReplicas")
    d = calc.step(HPAState(), 1, _load(1, 100.0), now=0.0)
    assert (d.desired, d.reason) == (2, "TooFewReplicas")
    calc = ReplicaCalculator(_hz(min_replicas=2, scale_down=NO_WINDOW_DOWN))
    d = calc.step(HPAState(), 4, _load(4, 10.0), now=0.0)
    assert (d.proposal, d.desired, d.reason) == (1, 2, "TooFewReplicas")


def test_zero_current_replicas_disables_scaling() -> None:
    d = ReplicaCalculator(_hz()).step(HPAState(), 0, {"cpu": 500.0}, now=0.0)
    assert (d.desired, d.reason) == (0, "ScalingDisabled")


def test_missing_metrics_make_no_decision() -> None:
    d = ReplicaCalculator(_hz()).step(HPAState(), 4, {"cpu": None}, now=0.0)
    assert (d.proposal, d.desired, d.reason, d.missing) == (None, 4, "MissingMetrics", ("cpu",))


# -- behavior: rate policies ----------------------------------------------------------------


def test_default_scale_up_is_max_of_4_pods_and_100_percent_per_15s() -> None:
    calc = ReplicaCalculator(_hz(max_replicas=50))
    state, current, seen = HPAState(), 1, []
    for t in (0.0, 15.0, 30.0, 45.0):
        d = calc.step(state, current, _load(current, 2500.0), now=t)  # wants 25
        state.record_scale(t, current, d.desired)
        current = d.desired
        seen.append(current)
    # 1 → max(1+4, 2) = 5 → max(9, 10) = 10 → max(14, 20) = 20 → 25
    assert seen == [5, 10, 20, 25]


@pytest.mark.parametrize(("select", "expected"), [("Max", [5, 10, 20]), ("Min", [2, 4, 8])])
def test_pods_4_vs_percent_100_per_15s_with_select_policy(select: str, expected: list[int]) -> None:
    rules = HPARules(0.0, select, (HPAPolicy("Pods", 4, 15.0), HPAPolicy("Percent", 100, 15.0)))
    calc = ReplicaCalculator(_hz(scale_up=rules))
    state, current, seen = HPAState(), 1, []
    for t in (0.0, 15.0, 30.0):
        d = calc.step(state, current, _load(current, 3000.0), now=t)
        assert d.reason in {"ScaleUpLimit", "DesiredWithinRange"}
        state.record_scale(t, current, d.desired)
        current = d.desired
        seen.append(current)
    assert seen == expected


def test_rate_is_measured_from_the_count_at_the_start_of_the_period() -> None:
    # scaleDown: Percent 10 per 60 s (the docs' "remove at most 10 % per minute").
    down = HPARules(0.0, "Max", (HPAPolicy("Percent", 10, 60.0),))
    calc = ReplicaCalculator(_hz(scale_down=down))
    state = HPAState(started=True)
    d = calc.step(state, 80, _load(80, 1000.0), now=0.0)  # wants 10
    assert (d.desired, d.reason) == (72, "ScaleDownLimit")
    state.record_scale(0.0, 80, 72)
    d = calc.step(state, 72, _load(72, 1000.0), now=30.0)  # period still starts at 80
    assert d.desired == 72
    d = calc.step(state, 72, _load(72, 1000.0), now=60.0)  # the t=0 event left the period
    assert d.desired == 64  # int(72 × 0.9) = 64: 7.2 pods rounds to 8 removed


def test_docs_pods_4_and_percent_10_per_minute_scale_down() -> None:
    """The docs: above 40 replicas the Percent policy removes more; below, Pods (4) does."""
    down = HPARules(0.0, "Max", (HPAPolicy("Pods", 4, 60.0), HPAPolicy("Percent", 10, 60.0)))
    calc = ReplicaCalculator(_hz(scale_down=down))
    state, current, seen = HPAState(started=True), 80, []
    for i in range(8):
        t = 60.0 * i
        d = calc.step(state, current, _load(current, 1000.0), now=t)
        state.record_scale(t, current, d.desired)
        current = d.desired
        seen.append(current)
    assert seen == [72, 64, 57, 51, 45, 40, 36, 32]


def test_select_policy_min_limits_scale_down_to_the_smallest_change() -> None:
    down = HPARules(0.0, "Min", (HPAPolicy("Pods", 4, 60.0), HPAPolicy("Percent", 10, 60.0)))
    d = ReplicaCalculator(_hz(scale_down=down)).step(
        HPAState(started=True), 80, _load(80, 1000.0), now=0.0
    )
    assert d.desired == 76


def test_select_policy_disabled_never_scales_that_way() -> None:
    down = HPARules(0.0, "Disabled", (HPAPolicy("Percent", 100, 15.0),))
    d = ReplicaCalculator(_hz(scale_down=down)).step(
        HPAState(started=True), 8, _load(8, 100.0), now=0.0
    )
    assert (d.proposal, d.desired) == (1, 8)
    up = HPARules(0.0, "Disabled", (HPAPolicy("Percent", 100, 15.0),))
    d = ReplicaCalculator(_hz(scale_up=up)).step(HPAState(), 2, _load(2, 800.0), now=0.0)
    assert (d.proposal, d.desired) == (8, 2)


# -- behavior: stabilization windows --------------------------------------------------------


def test_default_scale_down_window_uses_the_highest_recommendation_of_300s() -> None:
    calc = ReplicaCalculator(_hz())
    state = HPAState()
    assert calc.step(state, 10, _load(10, 1000.0), now=0.0).desired == 10  # busy
    for t in (15.0, 60.0, 150.0, 299.0):
        d = calc.step(state, 10, _load(10, 200.0), now=t)  # wants 2
        assert (d.proposal, d.desired, d.reason) == (2, 10, "ScaleDownStabilized")
    d = calc.step(state, 10, _load(10, 200.0), now=300.0)  # t=0 is out of (0, 300]
    assert (d.desired, d.reason) == (2, "DesiredWithinRange")


def test_a_busy_moment_restarts_the_scale_down_window() -> None:
    calc = ReplicaCalculator(_hz())
    state = HPAState(started=True)
    calc.step(state, 10, _load(10, 200.0), now=0.0)
    calc.step(state, 10, _load(10, 600.0), now=100.0)  # proposal 6
    assert calc.step(state, 10, _load(10, 200.0), now=350.0).desired == 6
    assert calc.step(state, 10, _load(10, 200.0), now=400.0).desired == 2


def test_a_new_autoscaler_does_not_scale_down_within_the_window() -> None:
    calc = ReplicaCalculator(_hz())
    state = HPAState()
    assert calc.step(state, 6, _load(6, 100.0), now=1000.0).desired == 6
    assert calc.step(state, 6, _load(6, 100.0), now=1300.0).desired == 1


def test_scale_up_window_uses_the_lowest_recommendation() -> None:
    up = HPARules(60.0, "Max", (HPAPolicy("Percent", 1000, 15.0),))
    calc = ReplicaCalculator(_hz(scale_up=up, scale_down=NO_WINDOW_DOWN))
    state = HPAState()
    assert calc.step(state, 2, _load(2, 200.0), now=0.0).desired == 2
    d = calc.step(state, 2, _load(2, 800.0), now=10.0)  # wants 8; t=0 saw 2
    assert (d.proposal, d.desired, d.reason) == (8, 2, "ScaleUpStabilized")
    assert calc.step(state, 2, _load(2, 800.0), now=59.0).desired == 2  # t=0 still inside
    assert calc.step(state, 2, _load(2, 800.0), now=60.0).desired == 8  # window is (0, 60]


# -- state ----------------------------------------------------------------------------------


def test_state_round_trips_through_a_dict() -> None:
    calc = ReplicaCalculator(_hz())
    state = HPAState()
    calc.step(state, 2, _load(2, 800.0), now=0.0)
    state.record_scale(0.0, 2, 8)
    copy = HPAState.from_dict(state.to_dict())
    assert copy == state
    assert calc.step(copy, 8, _load(8, 800.0), now=5.0) == calc.step(state, 8, _load(8, 800.0), 5.0)


def test_unreported_changes_are_inferred_and_limit_the_rate() -> None:
    calc = ReplicaCalculator(_hz(max_replicas=100))
    state = HPAState()
    calc.step(state, 1, _load(1, 100.0), now=0.0)
    d = calc.step(state, 5, _load(5, 5000.0), now=5.0)  # someone went 1 → 5 since
    assert state.scale_up_events == [(5.0, 4)]
    assert d.desired == 5  # the period started at 1: max(1 + 4, 2) = 5


def test_state_stays_bounded_over_a_long_run() -> None:
    calc = ReplicaCalculator(_hz())
    state, current = HPAState(), 4
    for i in range(2000):
        t = 15.0 * i
        d = calc.step(state, current, _load(current, 400.0 + (i % 7) * 100.0), now=t)
        state.record_scale(t, current, d.desired)
        current = d.desired
    assert len(state.recommendations) <= 300 / 15 + 1
    assert len(state.scale_up_events) <= 1
    assert len(state.scale_down_events) <= 1
