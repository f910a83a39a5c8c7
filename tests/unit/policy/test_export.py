"""Exporting a policy as Prometheus alerting rules; promtool must accept the file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import require_command

from scalewise.policy.export import export_prometheus_rules, prometheus_duration, rule_expression
from scalewise.policy.metrics import METRICS
from scalewise.policy.model import Policy
from scalewise.policy.presets import PRESETS
from scalewise.policy.rules import parse_policy


def policy_of(*rules: dict[str, Any], **fields: Any) -> Policy:
    return parse_policy({"rules": list(rules), **fields})


def every_metric() -> Policy:
    rules = [
        {"name": f"r_{name}", "metric": name, "above": 1, "action": "notify"}
        for name in METRICS
        if METRICS[name].kind not in {"ratio", "duration"}
    ]
    rules += [
        {"name": f"r_{name}", "metric": name, "below": "50%", "action": "scale_down"}
        for name in METRICS
        if METRICS[name].kind == "ratio"
    ]
    rules += [
        {"name": f"r_{name}", "metric": name, "above": "2s", "for": "5m", "action": "scale_up"}
        for name in METRICS
        if METRICS[name].kind == "duration"
    ]
    rules.append(
        {
            "name": "backlog",
            "promql": 'sum(queue_depth{job="worker"})',
            "above": 100,
            "for": "5m",
            "keep_firing_for": "10m",
            "action": "scale_up",
            "labels": {"team": "api"},
            "description": "Queue depth > 100 jobs",
        }
    )
    rules.append({"name": "gauge", "metric": "gauge:queue_depth", "above": 1, "action": "notify"})
    return policy_of(*rules, evaluation_interval="30s")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (600, "10m"),
        (5400, "1h30m"),
        (86400, "1d"),
        (0.25, "250ms"),
        (90.5, "1m30s500ms"),
        (0, "0s"),
    ],
)
def test_prometheus_duration(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


def test_catalog_metrics_translate_to_promql() -> None:
    policy = every_metric()
    by_name = {r.name: r for r in policy.rules}
    assert rule_expression(by_name["r_latency_p95"]) == (
        "(histogram_quantile(0.95, sum by (le) "
        "(rate(scalewise_http_request_duration_seconds_bucket[5m])))) > 2.0"
    )
    assert rule_expression(by_name["r_error_rate"], selector='job="api"') == (
        '(sum(rate(scalewise_http_requests_total{status="5xx",job="api"}[5m]))'
        ' / sum(rate(scalewise_http_requests_total{job="api"}[5m]))) < 0.5'
    )
    assert rule_expression(by_name["backlog"]) == '(sum(queue_depth{job="worker"})) > 100.0'
    assert rule_expression(by_name["gauge"]) is None
    for name in METRICS:
        assert rule_expression(by_name[f"r_{name}"]) is not None, name


def test_the_rule_file() -> None:
    text = export_prometheus_rules(every_metric(), group="api")
    data = yaml.safe_load(text)
    (group,) = data["groups"]
    assert (group["name"], group["interval"]) == ("api", "30s")
    rules = {r["alert"]: r for r in group["rules"]}
    assert len(rules) == len(METRICS) + 1  # the user gauge is left out
    backlog = rules["backlog"]
    assert backlog["for"] == "5m"
    assert backlog["keep_firing_for"] == "10m"
    assert backlog["labels"] == {"team": "api", "severity": "warning", "action": "scale_up"}
    assert backlog["annotations"]["description"] == "Queue depth > 100 jobs"
    assert "for" not in rules["r_rps"]
    assert "{{ $value }}" in rules["r_rps"]["annotations"]["description"]
    assert "# gauge left out: gauge:queue_depth is a user gauge" in text
    assert "scrapes, so peaks" in text  # concurrency_peak's caveat, as a comment


def test_an_empty_policy_exports_an_empty_group() -> None:
    data = yaml.safe_load(export_prometheus_rules(Policy()))
    assert data == {"groups": [{"name": "scalewise", "interval": "1m", "rules": []}]}


@pytest.mark.promtool
def test_promtool_accepts_the_exported_rules(tmp_path: Path) -> None:
    promtool = require_command("promtool", "prometheus")
    policies = {
        name: parse_policy(yaml.safe_load(text)["policy"]) for name, text in PRESETS.items()
    }
    policies["every_metric"] = every_metric()
    for name, policy in policies.items():
        path = tmp_path / f"{name}.rules.yml"
        path.write_text(export_prometheus_rules(policy, selector='job="api"'), encoding="utf-8")
        result = subprocess.run(
            [promtool, "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (name, result.stdout + result.stderr)
        assert "SUCCESS" in result.stdout
