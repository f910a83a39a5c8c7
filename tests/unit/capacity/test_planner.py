"""Capacity planner: SLO parsing, capacity at the SLO, plan sizing, and what it says it assumed."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from scalewise.capacity.planner import (
    Slo,
    Step,
    Target,
    capacity_at_slo,
    parse_slo,
    plan_capacity,
)
from scalewise.errors import ConfigError, FitError
from scalewise.policy.plans import parse_plans

P95_300MS = Slo(0.95, 0.3)

# A service that scales, then saturates around concurrency 13 (p95 crosses 300 ms at ~13).
SCALING = [
    Step(1, 50, 0.03),
    Step(2, 95, 0.035),
    Step(4, 170, 0.05),
    Step(8, 260, 0.12),
    Step(16, 280, 0.4),
]
# One single-threaded worker: throughput flat at 100 req/s, latency grows with the queue.
FLAT = [Step(1, 100, 0.01), Step(2, 100, 0.02), Step(4, 100, 0.04), Step(8, 100, 0.08)]


@pytest.mark.parametrize(
    ("text", "quantile", "seconds"),
    [
        ("p95<300ms", 0.95, 0.3),
        ("p99 < 1s", 0.99, 1.0),
        ("p(99.9)<2s", 0.999, 2.0),
        ("P50<=250ms", 0.5, 0.25),
    ],
)
def test_parse_slo(text: str, quantile: float, seconds: float) -> None:
    slo = parse_slo(text)
    assert slo.quantile == pytest.approx(quantile)
    assert slo.seconds == pytest.approx(seconds)


def test_slo_prints_back() -> None:
    assert str(parse_slo("p95<300ms")) == "p95<300ms"
    assert str(parse_slo("p99.9<2s")) == "p99.9<2s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95<300", "give the unit"),
        ("p95>300ms", "expected an SLO like 'p95<300ms'"),
        ("p100<1s", "expected an SLO"),
        ("fast", "expected an SLO"),
        ("p95<soon", "expected an SLO"),
    ],
)
def test_parse_slo_errors_name_the_option(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_slo(text)
    assert info.value.path == "--slo"


def test_daily_users_convert_to_a_peak_rate() -> None:
    target = Target.from_daily_users(10_000, 30, peak_factor=3)
    assert target.rps == pytest.approx(10_000 * 30 / 86_400 * 3)
    assert target.conversion == (
        "10,000 users × 30 requests/day = 300,000 requests/day ÷ 86,400 s = "
        "3.47 req/s average × peak factor 3 = 10.4 req/s at peak"
    )
    assert Target(200.0).conversion is None


@pytest.mark.parametrize(
    "args", [(0, 30, 3), (10_000, -1, 3), (10_000, 30, 0.5)], ids=["users", "requests", "peak"]
)
def test_bad_daily_user_inputs(args: tuple[float, float, float]) -> None:
    with pytest.raises(ConfigError):
        Target.from_daily_users(*args)


def test_capacity_interpolates_where_the_slo_is_crossed() -> None:
    capacity, basis = capacity_at_slo(SCALING, P95_300MS, None, 0.01)
    # p95 0.12 s at 8, 0.40 s at 16 → 0.3 s at 8 + 8·(0.18/0.28); throughput likewise.
    assert capacity == pytest.approx(260 + 20 * 0.18 / 0.28)
    assert "between the measured steps 8 (120ms) and 16 (400ms)" in basis
    assert "linear interpolation" in basis


def test_capacity_with_usl_never_leaves_the_measured_bracket() -> None:
    plan = plan_capacity(SCALING, P95_300MS, Target(100.0))
    assert plan.usl is not None
    assert 260 <= plan.capacity_rps <= 280
    assert "USL curve" in plan.capacity_basis


def test_capacity_is_a_stated_lower_bound_when_the_slo_always_held() -> None:
    capacity, basis = capacity_at_slo(FLAT, P95_300MS, None, 0.01)
    assert capacity == 100
    assert "lower bound" in basis


def test_errors_end_the_capacity_even_when_latency_is_fine() -> None:
    steps = [Step(1, 50, 0.03), Step(2, 95, 0.04), Step(4, 150, 0.05, error_rate=0.05)]
    capacity, basis = capacity_at_slo(steps, P95_300MS, None, 0.01)
    assert capacity == 95
    assert "5.0% errors" in basis


def test_no_step_meeting_the_slo_says_so() -> None:
    slow = [Step(1, 2, 0.5), Step(2, 3, 0.7), Step(4, 3.5, 1.2), Step(8, 3.6, 2.5)]
    with pytest.raises(FitError, match=r"no measured step met p95<300ms \(best: p95 500ms"):
        plan_capacity(slow, P95_300MS, Target(10.0))


def test_missing_quantile_is_explained() -> None:
    with pytest.raises(FitError, match="no step has a p99 latency"):
        capacity_at_slo(SCALING, Slo(0.99, 1.0), None, 0.01)


def test_other_quantiles_come_from_latencies() -> None:
    steps = [Step(s.concurrency, s.throughput, None, latencies=((0.99, 2 * (s.p95 or 0)),))
             for s in SCALING]  # fmt: skip
    capacity, basis = capacity_at_slo(steps, Slo(0.99, 0.3), None, 0.01)
    # p99 0.24 s at 8, 0.8 s at 16 → crosses 0.3 s at fraction 0.06 / 0.56.
    assert capacity == pytest.approx(260 + 20 * 0.06 / 0.56)
    assert "p99 crosses 300ms" in basis


def test_plan_sizes_every_tier_and_picks_the_cheapest() -> None:
    # Capacity 100 req/s on 1 CPU (a lower bound); 70 % headroom; target 150 req/s.
    plan = plan_capacity(FLAT, Slo(0.95, 0.3), Target(150.0))
    by_name = {o.plan.name: o for o in plan.options}
    assert by_name["Starter"].instances == 5  # 0.5 CPU → 50 req/s → 35 usable → ⌈150/35⌉
    assert by_name["Standard"].instances == 3  # ⌈150/70⌉
    assert by_name["Pro"].instances == 2  # ⌈150/140⌉
    assert by_name["Pro Ultra"].instances == 1
    assert by_name["Standard"].monthly_cost == 75.0
    assert plan.recommended is not None
    assert (plan.recommended.plan.name, plan.recommended.instances) == ("Starter", 5)
    assert plan.recommended.monthly_cost == 35.0
    assert plan.usable_rps == pytest.approx(70.0)
    assert plan.shortfall is None


def test_predicted_latency_is_mm1_for_a_single_worker() -> None:
    # Flat throughput = one server with μ = 100/s. Standard × 3 gets 50 req/s each: M/M/1,
    # response time ~ Exp(μ − λ), p95 = ln 20 / 50. Starter (half the CPU) has μ = 50/s and
    # 5 instances at 30 req/s: p95 = ln 20 / 20.
    plan = plan_capacity(FLAT, Slo(0.95, 0.3), Target(150.0))
    by_name = {o.plan.name: o for o in plan.options}
    assert by_name["Standard"].servers == 1
    assert by_name["Standard"].predicted_latency == pytest.approx(math.log(20) / 50)
    assert by_name["Standard"].utilisation == pytest.approx(0.5)
    assert by_name["Starter"].predicted_latency == pytest.approx(math.log(20) / 20)


def test_a_service_that_does_not_scale_is_still_planned_from_measurements() -> None:
    plan = plan_capacity(FLAT, Slo(0.95, 0.3), Target(150.0))
    assert plan.usl is None
    assert plan.usl_error is not None
    assert "σ at bound 1" in plan.usl_error
    assert any(note.startswith("no USL fit: σ at bound 1") for note in plan.notes)


def test_instances_are_added_until_the_queue_model_meets_the_slo() -> None:
    # Starter: μ = 50/s per instance, p95 = ln 20 / (50 − λᵢ) ≤ 0.1 s → λᵢ ≤ 20.04 → 8 × 18.75.
    plan = plan_capacity(FLAT, Slo(0.95, 0.1), Target(150.0))
    starter = next(o for o in plan.options if o.plan.name == "Starter")
    assert (starter.instances_for_rate, starter.instances) == (5, 8)
    assert starter.meets_slo
    assert starter.predicted_latency == pytest.approx(math.log(20) / (50 - 150 / 8))
    assert plan.recommended == starter
    assert any("Starter sized up from 5 to 8 instances" in note for note in plan.notes)


def test_a_plan_the_queue_model_rejects_is_not_recommended() -> None:
    # SLO 50 ms: Starter's service time alone has p95 ln 20 / 50 = 60 ms under M/M/c.
    plan = plan_capacity(FLAT, Slo(0.95, 0.05), Target(150.0))
    starter = next(o for o in plan.options if o.plan.name == "Starter")
    assert not starter.meets_slo
    assert starter.instances == starter.instances_for_rate == 5
    assert plan.recommended is not None
    # Standard: ln 20 / (100 − λᵢ) ≤ 0.05 → λᵢ ≤ 40.1 → 4 instances, $100.
    assert (plan.recommended.plan.name, plan.recommended.instances) == ("Standard", 4)


def test_when_no_plan_meets_the_queue_model_the_cheapest_is_flagged() -> None:
    # SLO 20 ms: M/M/c's p95 of the service time alone is 30 ms on every tier.
    plan = plan_capacity(FLAT, Slo(0.95, 0.02), Target(150.0))
    assert not any(o.meets_slo for o in plan.options)
    assert plan.recommended is not None
    assert plan.recommended.plan.name == "Starter"
    assert any("for every plan within its instance limit" in note for note in plan.notes)


def test_target_beyond_the_catalog_says_what_would_do() -> None:
    plan = plan_capacity(FLAT, Slo(0.95, 0.3), Target(10_000.0))
    assert plan.recommended is None
    # Pro Ultra (8 CPU): 800 req/s × 0.7 = 560 usable → ⌈10 000 / 560⌉ = 18 > 10.
    assert plan.shortfall is not None
    assert "needs 18 × Pro Ultra; catalog max is 10" in plan.shortfall
    assert all(not o.fits for o in plan.options)


def test_custom_catalog_and_measured_cpu() -> None:
    catalog = parse_plans(
        [
            {"name": "small", "cpu": 2, "memory": "1GiB", "price_month": 10, "max_instances": 4},
            {"name": "big", "cpu": 8, "memory": "8GiB", "price_month": 30, "max_instances": 2},
        ],
        "test",
    )
    # Measured on 2 CPUs at 100 req/s: small = 100, big = 400 req/s per instance.
    plan = plan_capacity(FLAT, P95_300MS, Target(250.0), catalog=catalog, measured_cpu=2)
    by_name = {o.plan.name: o for o in plan.options}
    assert by_name["small"].capacity_rps == 100
    assert by_name["small"].instances == 4  # ⌈250 / 70⌉
    assert by_name["big"].instances == 1  # ⌈250 / 280⌉
    assert plan.recommended is not None
    assert plan.recommended.plan.name == "big"
    assert "measured instance (2 CPU)" in plan.assumptions[0]


def test_cpu_scaling_can_be_switched_off() -> None:
    plan = plan_capacity(FLAT, P95_300MS, Target(150.0), scale_with_cpu=False)
    assert {o.instances for o in plan.options} == {3}
    assert "CPU count ignored" in plan.assumptions[0]
    assert plan.recommended is not None
    assert plan.recommended.plan.name == "Starter"


def test_assumptions_are_stated_in_words() -> None:
    plan = plan_capacity(SCALING, P95_300MS, Target.from_daily_users(10_000, 30, 3))
    text = " ".join(plan.assumptions)
    assert "capacity scales linearly with CPU count" in text
    assert "70% of the capacity at the SLO" in text
    assert "M/M/c" in text
    assert "memory is not modelled" in text
    assert "peak load: 10,000 users × 30 requests/day" in text


def test_to_dict_is_strict_json() -> None:
    plan = plan_capacity(SCALING, P95_300MS, Target(400.0), headroom=0.5)
    doc = json.loads(json.dumps(plan.to_dict(), allow_nan=False))
    assert doc["slo"] == {"text": "p95<300ms", "quantile": 0.95, "seconds": 0.3}
    assert doc["headroom"] == 0.5
    assert doc["usl"]["sigma"] > 0
    cheapest = min((o for o in doc["options"] if o["fits"]), key=lambda o: o["monthly_cost"])
    assert doc["recommended"] == cheapest
    assert len(doc["options"]) == 6
    assert {"instances", "monthly_cost", "predicted_latency_seconds"} <= doc["options"][0].keys()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"headroom": 0}, ConfigError),
        ({"headroom": 1.5}, ConfigError),
        ({"measured_cpu": 0}, ConfigError),
        ({"catalog": ()}, ConfigError),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        plan_capacity(SCALING, P95_300MS, Target(10.0), **kwargs)


def test_no_steps_is_a_fit_error() -> None:
    with pytest.raises(FitError, match="no load steps"):
        plan_capacity([], P95_300MS, Target(10.0))


def test_target_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="a positive request rate"):
        Target(0.0)
