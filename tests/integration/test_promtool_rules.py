"""Our rule engine against Prometheus's own, through ``promtool test rules``.

Each scenario is one series ``my_metric{scenario="…"}`` with a value every minute, in
promtool's notation (``_`` = no sample, ``stale`` = a staleness marker). Several alerting rules
(``my_metric > 5`` with various ``for:`` / ``keep_firing_for:``) run over all of them. Our
engine replays the same series, through a source that reads them the way PromQL does (the
latest sample within the 5-minute lookback, none after a stale marker), and writes what *it*
says is firing at every check time into promtool's ``alert_rule_test`` entries. promtool then
evaluates the rules itself and must agree everywhere. (promtool lists firing alerts only, so
pending states are checked indirectly, through when they fire.)
"""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalewise.policy.evaluator import replay
from scalewise.policy.model import Action, Comparison, Policy, Rule, RuleState, Status
from tests.conftest import require, require_command

pytestmark = [pytest.mark.integration, pytest.mark.promtool]

STEP = 60.0  # one sample a minute
LOOKBACK = 300.0  # PromQL's default lookback delta
Token = float | str  # a value, "_" (no sample) or "stale"

#: (alert name, for, keep_firing_for) in seconds
RULES: tuple[tuple[str, float, float], ...] = (
    ("Instant", 0.0, 0.0),
    ("For5m", 300.0, 0.0),
    ("Keep3m", 0.0, 180.0),
    ("For5mKeep3m", 300.0, 180.0),
    ("For2mKeep1m", 120.0, 60.0),
)


def _random(seed: int, n: int = 90) -> list[Token]:
    rng = random.Random(seed)
    out: list[Token] = []
    for _ in range(n):
        roll = rng.random()
        out.append("_" if roll < 0.1 else "stale" if roll < 0.15 else rng.choice([0, 5, 7, 10]))
    return out


SCENARIOS: dict[str, Sequence[Token]] = {
    "sustained": [0] * 5 + [10] * 20 + [0] * 20,
    "blips": [0] * 5 + [10] * 3 + [0] * 5 + [10] * 6 + [0] * 4 + [10] * 4 + [0] * 10,
    "flapping": [10, 0] * 15 + [10, 10, 0] * 6 + [0] * 6,
    "stale_gaps": [10] * 10 + ["stale"] + ["_"] * 4 + [10] * 10 + ["stale"] + ["_"] * 10 + [10] * 5,
    "missing_samples": [10] * 10 + ["_"] * 3 + [10] * 10 + ["_"] * 12 + [10] * 8 + [0] * 3,
    "late_start": ["_"] * 6 + [7] * 12 + ["stale"] + [7] * 2 + [0] * 5,
    "threshold_edge": [5, 5.5, 5, 6, 6, 6, 6, 6, 5, 4.99, 5.01] * 4 + [5] * 6,
    "random_a": _random(1),
    "random_b": _random(2),
}


def promtool_version(promtool: str) -> tuple[int, int]:
    out = subprocess.run(
        [promtool, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(match[1]), int(match[2])) if match else (0, 0)


class PromQLSeries:
    """Rule values as an instant selector sees the series at ``now``.

    Prometheus 2.x includes a sample exactly ``LOOKBACK`` old; 3.x excludes it.
    """

    def __init__(self, series: dict[str, Sequence[Token]], inclusive_lookback: bool) -> None:
        self.series = series
        self.inclusive = inclusive_lookback

    def value(self, rule: Rule, now: float) -> float | None:
        tokens = self.series[rule.metric]
        for i in range(min(int(now // STEP), len(tokens) - 1), -1, -1):
            age = now - i * STEP
            if age > LOOKBACK or (age == LOOKBACK and not self.inclusive):
                return None
            token = tokens[i]
            if token == "stale":
                return None
            if token != "_":
                return float(token)
        return None


def notation(tokens: Sequence[Token]) -> str:
    return " ".join(t if isinstance(t, str) else repr(t) for t in tokens)


def engine_rules() -> list[Rule]:
    return [
        Rule(
            name=f"{alert}/{scenario}",
            metric=scenario,
            op=Comparison.GT,
            threshold=5.0,
            action=Action.NOTIFY,
            for_=for_,
            keep_firing_for=keep,
        )
        for alert, for_, keep in RULES
        for scenario in SCENARIOS
    ]


def rule_file() -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for alert, for_, keep in RULES:
        entry: dict[str, Any] = {"alert": alert, "expr": "my_metric > 5", "for": f"{int(for_)}s"}
        if keep:
            entry["keep_firing_for"] = f"{int(keep)}s"
        rules.append(entry)
    return {"groups": [{"name": "scalewise", "rules": rules}]}


def timeline(
    interval: float, end: float, inclusive: bool
) -> list[tuple[float, dict[str, RuleState]]]:
    policy = Policy(rules=tuple(engine_rules()), evaluation_interval=interval)
    return list(replay(policy, PromQLSeries(SCENARIOS, inclusive), 0.0, end))


def expectations(
    steps: list[tuple[float, dict[str, RuleState]]], checks: Sequence[float]
) -> list[dict[str, Any]]:
    """One ``alert_rule_test`` entry per rule and check time, from our engine's states as of
    the last evaluation at or before that time (promtool checks the same way)."""
    entries = []
    for at in checks:
        states = [s for t, s in steps if t <= at][-1]
        for alert, _, _ in RULES:
            firing = [
                {"exp_labels": {"scenario": scenario}}
                for scenario in SCENARIOS
                if states[f"{alert}/{scenario}"].status == Status.FIRING
            ]
            entries.append({"eval_time": f"{int(at)}s", "alertname": alert, "exp_alerts": firing})
    return entries


def write_files(tmp_path: Path, interval: float, entries: list[dict[str, Any]]) -> Path:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule_file(), sort_keys=False))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{int(interval)}s",
        "tests": [
            {
                "interval": f"{int(STEP)}s",
                "input_series": [
                    {"series": f'my_metric{{scenario="{name}"}}', "values": notation(tokens)}
                    for name, tokens in SCENARIOS.items()
                ],
                "alert_rule_test": entries,
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return path


def run_promtool(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def scenario(promtool: str, interval: float) -> tuple[list[dict[str, Any]], int]:
    """Expectations at every check time (every 30 s, or every interval if shorter), through
    6 minutes past the longest series so the lookback runs out; and how many say firing."""
    version = promtool_version(promtool)
    require(version >= (2, 42), f"promtool {version} predates keep_firing_for (2.42)")
    longest = max(len(tokens) for tokens in SCENARIOS.values())
    end = (longest + 6) * STEP
    grid = min(interval, 30.0)
    checks = [k * grid for k in range(int(end // grid) + 1)]
    steps = timeline(interval, end + interval, inclusive=version < (3, 0))
    entries = expectations(steps, checks)
    return entries, sum(len(e["exp_alerts"]) for e in entries)


@pytest.mark.parametrize("interval", [60.0, 120.0, 30.0])
def test_promtool_agrees_with_our_engine(tmp_path: Path, interval: float) -> None:
    promtool = require_command("promtool", "prometheus")
    entries, firing = scenario(promtool, interval)
    assert firing > 100  # the comparison is not vacuous
    assert any(not e["exp_alerts"] for e in entries)
    result = run_promtool(promtool, write_files(tmp_path, interval, entries))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness is sharp: one flipped expectation makes promtool fail."""
    promtool = require_command("promtool", "prometheus")
    entries, _ = scenario(promtool, 60.0)
    victim = next(e for e in entries if e["alertname"] == "For5mKeep3m" and e["exp_alerts"])
    victim["exp_alerts"] = victim["exp_alerts"][1:]
    result = run_promtool(promtool, write_files(tmp_path, 60.0, entries))
    assert result.returncode != 0
    assert "For5mKeep3m" in result.stdout + result.stderr
