"""Decisions: any up-rule scales up, all down-rules scale down, cooldown, plans and replicas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

import pytest

from scalewise.errors import ConfigError
from scalewise.policy.decide import decide, describe, format_value
from scalewise.policy.model import (
    Action,
    Comparison,
    Horizontal,
    HPATarget,
    Plan,
    Policy,
    Rule,
    RuleState,
    Status,
)
from scalewise.policy.plans import DEFAULT_PLANS
from scalewise.policy.replicas import HPAState

H = 3600.0
GT, LT = Comparison.GT, Comparison.LT
UP, DOWN = Action.SCALE_UP, Action.SCALE_DOWN

# Seed 001's MVP triggers.
RULES = (
    Rule("slow_responses", "latency_avg", GT, 8.0, UP, window=H, for_=H),
    Rule("busy", "concurrency_peak", GT, 10, UP, for_=0.0),
    Rule("high_memory", "memory_mb", GT, 400, UP, for_=1800.0),
    Rule("errors", "error_rate", GT, 0.05, UP, for_=H),
    Rule("fast", "latency_avg", LT, 3.0, DOWN, for_=24 * H),
    Rule("quiet", "concurrency_peak", LT, 5, DOWN, for_=48 * H),
    Rule("small_memory", "memory_mb", LT, 200, DOWN, for_=48 * H),
    Rule("few_errors", "error_rate", LT, 0.01, DOWN, for_=24 * H),
    Rule("lag", "loop_lag_seconds", GT, 0.5, Action.INVESTIGATE, for_=300.0),
)
POLICY = Policy(rules=RULES, current_plan="Starter", cooldown=600.0)
CALM = {
    "slow_responses": 4.0,
    "busy": 6,
    "high_memory": 300,
    "errors": 0.02,
    "fast": 4.0,
    "quiet": 6,
    "small_memory": 300,
    "few_errors": 0.02,
    "lag": 0.01,
}
IDLE = {**CALM, "fast": 1.0, "quiet": 2, "small_memory": 150, "few_errors": 0.001}


def _states(values: Mapping[str, float | None], firing: set[str]) -> dict[str, RuleState]:
    return {
        name: RuleState(name, Status.FIRING if name in firing else Status.INACTIVE, value=value)
        for name, value in values.items()
    }


DOWN_RULES = {"fast", "quiet", "small_memory", "few_errors"}


def test_any_scale_up_rule_moves_to_the_next_plan_with_costs_and_reasons() -> None:
    values = {**CALM, "slow_responses": 9.2}
    rec = decide(POLICY, _states(values, {"slow_responses"}), now=1000.0)
    assert (rec.action, rec.kind) == ("scale_up", "vertical")
    assert (rec.current_plan, rec.target_plan) == ("Starter", "Standard")
    assert (rec.cost_before, rec.cost_after) == (7.0, 25.0)
    assert rec.firing == ("slow_responses",)
    assert rec.values["slow_responses"] == 9.2
    assert "latency_avg 9.2s > 8s for 1h (rule slow_responses)" in rec.reasons
    assert any("$7.00 → $25.00 per month (+$18.00)" in r for r in rec.reasons)
    json.dumps(rec.to_dict())


def test_scale_down_needs_every_scale_down_rule() -> None:
    policy = replace(POLICY, current_plan="Standard")
    rec = decide(policy, _states(IDLE, {"fast", "quiet", "small_memory"}), now=0.0)
    assert rec.action == "hold"
    assert rec.target_plan == "Standard"
    assert any("3 of 4 firing (not yet: few_errors)" in r for r in rec.reasons)
    rec = decide(policy, _states(IDLE, DOWN_RULES), now=0.0)
    assert (rec.action, rec.target_plan, rec.cost_after) == ("scale_down", "Starter", 7.0)


def test_scale_down_requires_any_relaxes_it() -> None:
    policy = replace(POLICY, current_plan="Standard", scale_down_requires="any")
    rec = decide(policy, _states(IDLE, {"quiet"}), now=0.0)
    assert (rec.action, rec.target_plan) == ("scale_down", "Starter")


def test_never_scale_down_while_a_scale_up_rule_fires() -> None:
    policy = replace(POLICY, current_plan="Standard")
    values = {**IDLE, "busy": 12}
    rec = decide(policy, _states(values, DOWN_RULES | {"busy"}), now=0.0)
    assert (rec.action, rec.target_plan) == ("scale_up", "Pro")
    assert any("scale-down vetoed" in r for r in rec.reasons)


def test_missing_data_blocks_a_scale_down_and_is_reported() -> None:
    policy = replace(POLICY, current_plan="Standard")
    values: dict[str, float | None] = {**IDLE, "small_memory": None}
    rec = decide(policy, _states(values, DOWN_RULES - {"small_memory"}), now=0.0)
    assert rec.action == "hold"
    assert rec.missing == ("small_memory",)
    assert "no data for small_memory" in rec.reasons
    assert "no scale-down while a scale rule has no data (as the HPA does)" in rec.reasons
    # Also when an up-rule (whose silence would justify the scale-down) has no data.
    values = {**IDLE, "high_memory": None}
    rec = decide(policy, _states(values, DOWN_RULES), now=0.0)
    assert rec.action == "hold"
    assert rec.missing == ("high_memory",)


def test_missing_data_does_not_block_a_scale_up() -> None:
    values: dict[str, float | None] = {**CALM, "errors": 0.2, "high_memory": None}
    rec = decide(POLICY, _states(values, {"errors"}), now=0.0)
    assert rec.action == "scale_up"
    assert rec.missing == ("high_memory",)
    assert "error_rate 20% > 5% for 1h (rule errors)" in rec.reasons


def test_rules_without_a_state_count_as_missing() -> None:
    rec = decide(POLICY, {}, now=0.0)
    assert rec.action == "hold"
    assert set(rec.missing) == set(CALM)


def test_cooldown_holds_changes_after_a_recent_one() -> None:
    states = _states({**CALM, "busy": 20}, {"busy"})
    rec = decide(POLICY, states, now=1000.0, last_change_at=700.0)
    assert (rec.action, rec.target_plan) == ("hold", "Starter")
    assert rec.cooldown_until == 1300.0
    assert rec.cost_after == rec.cost_before == 7.0
    assert "cost $7.00 per month (unchanged)" in rec.reasons
    assert any(
        "cooldown: last change 5m ago; would scale_up to Standard, next change allowed in 5m" in r
        for r in rec.reasons
    )
    rec = decide(POLICY, states, now=1300.0, last_change_at=700.0)
    assert (rec.action, rec.target_plan, rec.cooldown_until) == ("scale_up", "Standard", None)


def test_investigate_rules_only_add_reasons() -> None:
    values = {**CALM, "lag": 0.8}
    rec = decide(POLICY, _states(values, {"lag"}), now=0.0)
    assert rec.action == "hold"
    assert rec.firing == ("lag",)
    assert "loop_lag_seconds 800ms > 500ms for 5m (rule lag: investigate)" in rec.reasons


def test_top_plan_adds_instances_until_max_instances() -> None:
    states = _states({**CALM, "busy": 20}, {"busy"})
    rec = decide(POLICY, states, now=0.0, current_plan="Pro Ultra", current_instances=2)
    assert (rec.action, rec.kind, rec.target_plan) == ("scale_up", "horizontal", "Pro Ultra")
    assert (rec.target_instances, rec.cost_before, rec.cost_after) == (3, 900.0, 1350.0)
    assert any("largest plan" in r for r in rec.reasons)
    rec = decide(POLICY, states, now=0.0, current_plan="Pro Ultra", current_instances=10)
    assert (rec.action, rec.target_instances) == ("hold", 10)


def test_scale_down_removes_instances_before_changing_tier_and_stops_at_the_bottom() -> None:
    states = _states(IDLE, DOWN_RULES)
    rec = decide(POLICY, states, now=0.0, current_plan="Standard", current_instances=3)
    assert (rec.action, rec.kind, rec.target_plan, rec.target_instances) == (
        "scale_down",
        "horizontal",
        "Standard",
        2,
    )
    rec = decide(POLICY, states, now=0.0, current_plan="Starter", current_instances=1)
    assert (rec.action, rec.target_plan) == ("hold", "Starter")
    assert any("smallest plan" in r for r in rec.reasons)


def test_custom_catalog_and_unknown_plan() -> None:
    plans = (Plan("s", 1, 2**30, 10.0), Plan("m", 2, 2**31, 30.0))
    policy = replace(POLICY, plans=plans, current_plan="s")
    rec = decide(policy, _states({**CALM, "busy": 20}, {"busy"}), now=0.0)
    assert (rec.target_plan, rec.cost_after) == ("m", 30.0)
    with pytest.raises(ConfigError, match=r"policy\.current_plan"):
        decide(replace(POLICY, current_plan="Mega"), {}, now=0.0)


def test_without_a_current_plan_the_direction_is_still_given() -> None:
    policy = replace(POLICY, current_plan=None)
    rec = decide(policy, _states({**CALM, "busy": 20}, {"busy"}), now=0.0)
    assert (rec.action, rec.target_plan, rec.cost_before, rec.cost_after) == (
        "scale_up",
        None,
        None,
        None,
    )
    assert any("no current plan" in r for r in rec.reasons)


def test_bad_scale_down_requires_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="scale_down_requires"):
        decide(replace(POLICY, scale_down_requires="most"), {}, now=0.0)


# -- horizontal -----------------------------------------------------------------------------

HZ = Horizontal(targets=(HPATarget("cpu_ratio", 0.5),), min_replicas=1, max_replicas=8)
HPOLICY = replace(POLICY, horizontal=HZ, current_plan="Standard", instances=2)


def test_horizontal_uses_the_hpa_formula() -> None:
    rec = decide(HPOLICY, _states(CALM, set()), now=0.0, hpa_values={"cpu_ratio": 0.9})
    assert (rec.action, rec.kind) == ("scale_up", "horizontal")
    assert (rec.target_plan, rec.target_instances) == ("Standard", 4)  # ceil(2 × 0.9 / 0.5)
    assert (rec.cost_before, rec.cost_after) == (50.0, 100.0)
    assert any("cpu_ratio 90% per replica (target 50%)" in r for r in rec.reasons)


def test_horizontal_scale_down_follows_the_window_and_the_rules() -> None:
    state = HPAState()
    values = {"cpu_ratio": 0.1}
    idle = _states(IDLE, DOWN_RULES)
    rec = decide(HPOLICY, idle, now=0.0, current_instances=4, hpa_values=values, hpa_state=state)
    assert rec.action == "hold"  # a new autoscaler waits out its 300 s window
    busy = _states({**IDLE, "busy": 12}, DOWN_RULES | {"busy"})
    rec = decide(HPOLICY, busy, now=400.0, current_instances=4, hpa_values=values, hpa_state=state)
    assert rec.action == "scale_up"  # the HPA proposes 1, but a firing scale_up rule adds one
    assert rec.target_instances == 5
    rec = decide(HPOLICY, idle, now=500.0, current_instances=4, hpa_values=values, hpa_state=state)
    assert (rec.action, rec.target_instances) == ("scale_down", 1)
    calm = _states(CALM, set())  # scale_down rules not all firing: veto
    rec = decide(HPOLICY, calm, now=600.0, current_instances=4, hpa_values=values, hpa_state=state)
    assert rec.action == "hold"
    assert any("veto" in r for r in rec.reasons)


def test_horizontal_is_capped_by_the_plan_max_instances() -> None:
    plans = tuple(replace(p, max_instances=3) for p in DEFAULT_PLANS)
    policy = replace(HPOLICY, plans=plans)
    rec = decide(policy, _states(CALM, set()), now=0.0, hpa_values={"cpu_ratio": 2.0})
    assert rec.target_instances == 3


def test_horizontal_without_targets_moves_one_instance() -> None:
    policy = replace(POLICY, horizontal=Horizontal(max_replicas=3), instances=3)
    rec = decide(policy, _states({**CALM, "busy": 20}, {"busy"}), now=0.0)
    assert (rec.action, rec.target_instances) == ("hold", 3)
    assert any("max_replicas 3" in r for r in rec.reasons)
    rec = decide(policy, _states(IDLE, DOWN_RULES), now=0.0)
    assert (rec.action, rec.kind, rec.target_instances) == ("scale_down", "horizontal", 2)


def test_horizontal_missing_hpa_metric_makes_no_decision() -> None:
    rec = decide(HPOLICY, _states(IDLE, DOWN_RULES), now=0.0, hpa_values={"cpu_ratio": None})
    assert rec.action == "hold"
    assert any("MissingMetrics" in r and "no data" in r for r in rec.reasons)


def test_value_formatting_follows_metric_units() -> None:
    assert format_value("latency_p95", 2.5) == "2.5s"
    assert format_value("error_rate", 0.012) == "1.2%"
    assert format_value("memory_mb", 412.0) == "412MB"
    assert format_value("rss_bytes", 2**30) == "1GiB"
    assert format_value("rps", 12.345) == "12.35/s"
    assert format_value("gauge:queue_depth", None) == "no data"
    rule = Rule("q", "gauge:queue_depth", GT, 100, Action.NOTIFY)
    assert describe(rule, 150.0) == "gauge:queue_depth 150 > 100 (rule q: notify)"
