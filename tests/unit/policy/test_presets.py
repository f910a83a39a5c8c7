"""Presets: whole scalewise.yaml files that load cleanly and say what the seeds say."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalewise.config import load_config
from scalewise.errors import ConfigError
from scalewise.policy.model import Action, Comparison, Policy
from scalewise.policy.presets import PRESETS, preset_yaml
from scalewise.policy.rules import flapping_warnings

UP, DOWN = Action.SCALE_UP, Action.SCALE_DOWN
GT, LT = Comparison.GT, Comparison.LT


def load(tmp_path: Path, name: str) -> Policy:
    path = tmp_path / "scalewise.yaml"
    path.write_text(preset_yaml(name), encoding="utf-8")
    return load_config(path, env={}).policy_object()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_loads_without_problems_or_flapping(tmp_path: Path, name: str) -> None:
    policy = load(tmp_path, name)
    assert policy.preset == name
    assert policy.rules
    assert policy.current_plan == "starter"
    assert flapping_warnings(policy) == []
    assert preset_yaml(name).startswith("# scalewise.yaml, written by `scalewise init --preset")


def table(policy: Policy) -> dict[str, tuple[str, Comparison, float, float, Action]]:
    return {r.name: (r.metric, r.op, r.threshold, r.for_, r.action) for r in policy.rules}


def test_mvp_is_seed_001(tmp_path: Path) -> None:
    policy = load(tmp_path, "mvp")
    assert table(policy) == {
        "slow_responses": ("latency_avg", GT, 8.0, 3600.0, UP),
        "high_concurrency": ("concurrency_peak", GT, 10.0, 600.0, UP),
        "high_memory": ("memory_mb", GT, 400.0, 1800.0, UP),
        "high_error_rate": ("error_rate", GT, 0.05, 3600.0, UP),
        "fast_responses": ("latency_avg", LT, 3.0, 3600.0, DOWN),
        "low_concurrency": ("concurrency_peak", LT, 5.0, 3600.0, DOWN),
        "low_memory": ("memory_mb", LT, 200.0, 3600.0, DOWN),
        "low_error_rate": ("error_rate", LT, 0.01, 3600.0, DOWN),
    }
    windows = {r.name: r.window for r in policy.rules if r.action is DOWN}
    assert windows == {
        "fast_responses": 86400.0,
        "low_concurrency": 172800.0,
        "low_memory": 172800.0,
        "low_error_rate": 86400.0,
    }
    assert policy.scale_down_requires == "all"
    text = preset_yaml("mvp")
    for words in (
        "Average response time > 8 seconds for 1 hour",
        "Peak concurrent users > 10 consistently",
        "Memory usage > 400MB for 30 minutes",
        "Error rate > 5% for 1 hour",
        "Average response time < 3 seconds for 24 hours",
        "Peak concurrent users < 5 for 48 hours",
        "Memory usage < 200MB for 48 hours",
        "Error rate < 1% for 24 hours",
    ):
        assert text.count(words) == 2, words  # in the header and beside its rule


def test_balanced_is_seed_002(tmp_path: Path) -> None:
    policy = load(tmp_path, "balanced")
    rules = table(policy)
    assert rules["high_cpu"] == ("cpu_percent", GT, 70.0, 900.0, UP)
    assert rules["high_memory"][:3] == ("memory_percent", GT, 80.0)
    assert rules["slow_p95"][:3] == ("latency_p95", GT, 2.0)
    assert rules["high_error_rate"][:3] == ("error_rate", GT, 0.01)
    assert rules["queue_backlog"][:3] == ("gauge:queue_depth", GT, 100.0)
    assert rules["low_cpu"] == ("cpu_percent", LT, 30.0, 3600.0, DOWN)
    assert rules["low_memory"] == ("memory_percent", LT, 50.0, 3600.0, DOWN)
    hpa = policy.horizontal
    assert hpa is not None
    assert [(t.metric, t.target) for t in hpa.targets] == [("cpu_percent", 70.0)]
    assert (hpa.min_replicas, hpa.max_replicas, hpa.scale_down.stabilization_window) == (1, 5, 300)
    assert "Queue depth > 100 jobs" in preset_yaml("balanced")


def test_starter_is_seed_000(tmp_path: Path) -> None:
    rules = table(load(tmp_path, "starter"))
    assert rules["slow_responses"][:3] == ("latency_avg", GT, 3.0)
    assert rules["high_concurrency"][:3] == ("concurrency_peak", GT, 20.0)
    assert rules["high_memory"][:3] == ("memory_percent", GT, 80.0)
    assert rules["busy_days"][:3] == ("requests_per_day", GT, 500.0)
    assert not [r for r in rules.values() if r[4] is DOWN]
    assert "Processing >500 audits/day" in preset_yaml("starter")


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(ConfigError) as info:
        preset_yaml("turbo")
    assert info.value.expected == "one of mvp, balanced, starter"
    assert info.value.got == "turbo"
