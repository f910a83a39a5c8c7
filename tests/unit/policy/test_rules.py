"""Parsing ``policy:``: both rule forms, thresholds by kind, every error with its path, flapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scalewise.config import load_config
from scalewise.config.policy_model import PolicySection
from scalewise.errors import ConfigError
from scalewise.policy.model import (
    DEFAULT_SCALE_UP,
    Action,
    Comparison,
    HPAPolicy,
    Policy,
    Rule,
)
from scalewise.policy.rules import check_policy, flapping_warnings, parse_policy, parse_threshold
from scalewise.units import DURATION_EXPECTED


def rule(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "r", "metric": "latency_avg", "above": "8s"}
    base["action"] = "scale_up"
    return {**base, **fields}


# -- rules ------------------------------------------------------------------------------------


def test_a_rule_in_full() -> None:
    policy = parse_policy(
        {
            "evaluation_interval": "30s",
            "rules": [
                {
                    "name": "slow_responses",
                    "metric": "latency_avg",
                    "window": "10m",
                    "above": "8s",
                    "for": "1h",
                    "keep_firing_for": "10m",
                    "action": "scale_up",
                    "severity": "critical",
                    "labels": {"team": "api", "tier": 1},
                    "description": "the seed's first trigger",
                }
            ],
        }
    )
    assert policy.evaluation_interval == 30.0
    assert policy.rules == (
        Rule(
            name="slow_responses",
            metric="latency_avg",
            op=Comparison.GT,
            threshold=8.0,
            action=Action.SCALE_UP,
            window=600.0,
            for_=3600.0,
            keep_firing_for=600.0,
            severity="critical",
            labels={"team": "api", "tier": "1"},
            description="the seed's first trigger",
        ),
    )


@pytest.mark.parametrize(
    ("form", "op", "threshold"),
    [
        ({"above": "8s"}, Comparison.GT, 8.0),
        ({"below": "8s"}, Comparison.LT, 8.0),
        ({"condition": "> 8s"}, Comparison.GT, 8.0),
        ({"condition": ">=8s"}, Comparison.GE, 8.0),
        ({"condition": "  <  250ms "}, Comparison.LT, 0.25),
        ({"condition": "<= 2"}, Comparison.LE, 2.0),
        ({"condition": "== 0"}, Comparison.EQ, 0.0),
        ({"condition": "!= 1m"}, Comparison.NE, 60.0),
    ],
)
def test_both_forms_of_a_condition(form: dict[str, str], op: Comparison, threshold: float) -> None:
    data = {"name": "r", "metric": "latency_avg", "action": "scale_up", **form}
    (parsed,) = parse_policy({"rules": [data]}).rules
    assert (parsed.op, parsed.threshold) == (op, threshold)


def test_defaults_of_a_rule() -> None:
    (parsed,) = parse_policy({"rules": [rule()]}).rules
    assert (parsed.window, parsed.for_, parsed.keep_firing_for) == (300.0, 0.0, 0.0)
    assert (parsed.severity, dict(parsed.labels), parsed.promql) == ("warning", {}, None)


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("latency_p95", "2s", 2.0),
        ("latency_p95", "250ms", 0.25),
        ("latency_p95", 1.5, 1.5),
        ("latency_p95", "1m30s", 90.0),
        ("error_rate", "5%", 0.05),
        ("error_rate", 0.05, 0.05),
        ("error_rate", "0.5%", 0.005),
        ("busy_ratio", "90%", 0.9),
        ("cpu_percent", "80%", 80.0),
        ("cpu_percent", 80, 80.0),
        ("cpu_percent", "150%", 150.0),  # two busy cores are 200 %
        ("memory_percent", "80", 80.0),
        ("memory_mb", "400MB", 400.0),
        ("memory_mb", "400 MiB", 400.0),
        ("memory_mb", "1.5GB", 1536.0),
        ("memory_mb", "512k", 0.5),
        ("memory_mb", 400, 400.0),
        ("memory_mb", "400", 400.0),
        ("concurrency_peak", 10, 10.0),
        ("concurrency_peak", "10", 10.0),
        ("requests_per_day", 500, 500.0),
        ("rps", 5, 5.0),
        ("rps", "300/m", 5.0),
        ("rps", "3600/h", 1.0),
        ("event_loop_lag", "100ms", 0.1),
        ("gauge:queue_depth", 100, 100.0),
        ("gauge:temperature", -5, -5.0),
        (None, 100, 100.0),  # a promql: rule
        (None, "2s", 2.0),
        (None, -1, -1.0),
    ],
)
def test_thresholds_by_kind(metric: str | None, value: object, expected: float) -> None:
    assert parse_threshold(metric, value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("metric", "value", "words"),
    [
        ("latency_p95", "5%", "a duration like '2s' or '250ms' (latency_p95 is a duration metric)"),
        ("latency_avg", "400MB", "duration metric"),
        ("latency_avg", -1, "duration metric"),
        ("error_rate", "2s", "(error_rate is a ratio metric)"),
        ("error_rate", 5, "a fraction between 0 and 1"),
        ("cpu_percent", "2s", "(cpu_percent is a percent metric)"),
        ("cpu_percent", -5, "percent metric"),
        ("memory_mb", "5%", "(memory_mb is a megabytes metric)"),
        ("memory_mb", "400 parsecs", "megabytes metric"),
        ("concurrency_peak", "10s", "a plain number (concurrency_peak is a count metric)"),
        ("concurrency_peak", -1, "count metric"),
        ("rps", "5/fortnight", "rate metric"),
        ("rps", True, "rate metric"),
        ("requests_per_day", None, "count metric"),
        (None, "lots", "the PromQL expression's value"),
    ],
)
def test_thresholds_of_the_wrong_kind(metric: str | None, value: object, words: str) -> None:
    with pytest.raises(ValueError, match=r"^a") as info:
        parse_threshold(metric, value)
    assert words in str(info.value)


def test_wrong_kind_error_names_the_field_and_the_kind() -> None:
    data = {"rules": [rule(metric="latency_p95", above="5%")]}
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="scalewise.yaml")
    assert str(info.value) == (
        "scalewise.yaml: policy.rules[0].above: expected a duration like '2s' or '250ms'"
        " (latency_p95 is a duration metric), got '5%'"
    )
    assert (info.value.path, info.value.got) == ("policy.rules[0].above", "5%")


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    data = {
        "cooldown": "soonish",
        "rules": [
            rule(name="ok"),
            rule(name="bad", metric="latency_p59", above="5%"),
            rule(name="later", **{"for": "soon"}, action="scale_upp", severity="dire"),
            "not a mapping",
            rule(name="ok", frobnicate=1),
            {"metric": "rps", "above": 1},
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_policy(data, source="my.yaml")
    lines = str(info.value).splitlines()
    assert all(line.startswith("my.yaml: policy.") for line in lines)
    text = "\n".join(lines)
    assert f"policy.cooldown: expected {DURATION_EXPECTED}, got 'soonish'" in text
    assert "policy.rules[1].metric: expected a catalog metric or gauge:NAME (did you mean" in text
    assert "latency_p95" in lines[1]
    assert f"policy.rules[2].for: expected {DURATION_EXPECTED}, got 'soon'" in text
    assert "policy.rules[2].action: expected one of scale_up, scale_down, investigate" in text
    assert "policy.rules[2].severity: expected one of info, warning, critical, got 'dire'" in text
    assert "policy.rules[3]: expected a mapping of keys to values, got 'str'" in text
    assert "policy.rules[4].frobnicate: expected one of the known keys: name," in text
    assert "policy.rules[4].name: expected a name not used by an earlier rule" in text
    assert "policy.rules[5].name: expected a name of letters" in text
    assert "policy.rules[5].action: expected one of scale_up" in text
    assert len(lines) == 10
    assert info.value.path == "policy.cooldown"  # the first problem, as the loader does


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"name": "x", "action": "notify", "above": 1}, "metric", "or a promql: expression"),
        (rule(above=None, condition=None), "condition", "a comparison like '> 8s'"),
        ({**rule(), "below": "3s"}, "below", "exactly one of above:, below: or condition:"),
        ({k: v for k, v in rule().items() if k != "above"}, "above", "exactly one of"),
        (rule(condition="=> 3s", above=None), "condition", "operators: > >= < <= == !="),
        (rule(condition="> ", above=None), "condition", "a comparison like"),
        (rule(window="0s"), "window", "greater than 0"),
        (rule(window="soon"), "window", "a duration"),
        (rule(keep_firing_for=-5), "keep_firing_for", "a duration"),
        (rule(name="has space"), "name", "a name of letters, digits and '_'"),
        (rule(name="9lives"), "name", "a name of letters"),
        (rule(labels={"severity": "page"}), "labels", "not alertname, severity, action"),
        (rule(labels={"bad-name": "x"}), "labels", "a mapping of label names"),
        (rule(labels=["team"]), "labels", "a mapping of label names"),
        (rule(description=""), "description", "a non-empty string"),
        (rule(promql=""), "promql", "a non-empty string"),
        (rule(metric=42), "metric", "a catalog metric name"),
    ],
)
def test_rule_errors(data: dict[str, Any], path: str, words: str) -> None:
    if data.get("above", 0) is None:
        del data["above"]
    if "condition" in data and data["condition"] is None:
        data["condition"] = 7
    _, found = check_policy({"rules": [data]})
    assert [p.loc for p in found] == [("rules", 0, path)], found
    assert words in found[0].expected


def test_a_promql_rule_takes_numbers_or_durations() -> None:
    notify = {"action": "notify"}
    data = {
        "rules": [
            {"name": "backlog", "promql": "sum(queue_depth)", "above": 100, "action": "scale_up"},
            {"name": "slow", "promql": "histogram_quantile(0.9, x)", "above": "2s", **notify},
            {"name": "both", "metric": "error_rate", "promql": "sum(e)", "above": "1%", **notify},
        ]
    }
    backlog, slow, both = parse_policy(data).rules
    assert (backlog.metric, backlog.promql, backlog.threshold) == ("", "sum(queue_depth)", 100.0)
    assert slow.threshold == 2.0
    assert (both.metric, both.promql, both.threshold) == ("error_rate", "sum(e)", 0.01)


def test_a_bad_metric_does_not_also_blame_its_threshold() -> None:
    _, found = check_policy({"rules": [rule(metric="latency_p59", above="5%")]})
    assert [p.loc for p in found] == [("rules", 0, "metric")]


# -- the other sections --------------------------------------------------------------------


def test_policy_level_fields_and_defaults() -> None:
    assert parse_policy({}) == Policy()
    assert parse_policy(None) == Policy()
    policy = parse_policy(
        {
            "preset": "mvp",
            "evaluation_interval": "1m",
            "scale_down_requires": "any",
            "cooldown": "10m",
            "current_plan": "starter",
            "instances": 2,
        }
    )
    assert (policy.preset, policy.evaluation_interval, policy.scale_down_requires) == (
        "mvp",
        60.0,
        "any",
    )
    assert (policy.cooldown, policy.current_plan, policy.instances) == (600.0, "starter", 2)
    assert policy.plans == ()  # the decision layer falls back to the default catalog


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ([1, 2], (), "a mapping of keys to values"),
        ({"scale_down_requires": "most"}, ("scale_down_requires",), "one of all, any"),
        ({"instances": 0}, ("instances",), "a whole number of at least 1"),
        ({"instances": 1.5}, ("instances",), "a whole number"),
        ({"evaluation_interval": 0}, ("evaluation_interval",), "greater than 0"),
        ({"rules": {"name": "x"}}, ("rules",), "a list"),
        ({"rulez": []}, ("rulez",), "did you mean 'rules'?"),
        ({"command": {"argv": []}}, ("command", "argv"), "a list of arguments"),
        ({"command": {"argv": "kubectl scale", "dry_run": "no"}}, ("command", "dry_run"), "true"),
        ({"command": {"timeout": "0s"}}, ("command", "timeout"), "greater than 0"),
    ],
)
def test_policy_errors(data: object, path: tuple[Any, ...], words: str) -> None:
    _, found = check_policy(data)
    assert [p.loc for p in found] == [path], found
    assert words in found[0].expected


def test_plans_override_the_catalog_and_must_hold_the_current_plan() -> None:
    plans = [
        {"name": "starter", "cpu": 0.5, "memory": "512MiB", "price_month": 7},
        {"name": "standard", "cpu": 1, "memory": "2GiB", "price_month": "$25", "max_instances": 3},
    ]
    policy = parse_policy({"plans": plans, "current_plan": "standard", "instances": 3})
    assert [(p.name, p.cpu, p.memory_bytes, p.price_month) for p in policy.plans] == [
        ("starter", 0.5, 512 * 2**20, 7.0),
        ("standard", 1.0, 2 * 2**30, 25.0),
    ]
    _, found = check_policy({"plans": plans, "current_plan": "pro"})
    assert found[0].loc == ("current_plan",)
    assert found[0].expected == "a plan of plans: (one of starter, standard)"
    _, found = check_policy({"current_plan": "startr"})  # no plans: the default catalog
    assert found[0].loc == ("current_plan",)
    assert found[0].expected.startswith("a plan of the default catalog (one of Starter, Standard")
    assert parse_policy({"current_plan": "pro_plus", "instances": 10}).current_plan == "pro_plus"
    _, found = check_policy({"current_plan": "Starter", "instances": 11})
    assert found[0].loc == ("instances",)
    _, found = check_policy({"plans": plans, "current_plan": "starter", "instances": 2})
    assert found[0].loc == ("instances",)
    assert "max_instances of plan starter" in found[0].expected
    _, found = check_policy({"plans": [*plans, plans[0], {"name": "x", "cpu": 0}]})
    assert [p.loc for p in found] == [
        ("plans", 2, "name"),
        ("plans", 3, "cpu"),
        ("plans", 3, "memory"),
        ("plans", 3, "price_month"),
    ]


def test_horizontal_follows_the_hpa() -> None:
    policy = parse_policy(
        {
            "horizontal": {
                "min_replicas": 2,
                "max_replicas": 8,
                "tolerance": 0.05,
                "targets": [
                    {"metric": "cpu_percent", "target": "70%"},
                    {"metric": "latency_p95", "target": "300ms"},
                ],
                "behavior": {
                    "scale_down": {
                        "stabilization_window": "10m",
                        "select_policy": "Min",
                        "policies": [{"type": "Pods", "value": 1, "period": "1m"}],
                    }
                },
            }
        }
    )
    hpa = policy.horizontal
    assert hpa is not None
    assert (hpa.min_replicas, hpa.max_replicas, hpa.tolerance) == (2, 8, 0.05)
    assert [(t.metric, t.target) for t in hpa.targets] == [
        ("cpu_percent", 70.0),
        ("latency_p95", 0.3),
    ]
    assert hpa.scale_up == DEFAULT_SCALE_UP
    assert hpa.scale_down.stabilization_window == 600.0
    assert hpa.scale_down.select_policy == "Min"
    assert hpa.scale_down.policies == (HPAPolicy("Pods", 1, 60.0),)
    assert parse_policy({"horizontal": {}}).horizontal == type(hpa)()


def test_horizontal_errors() -> None:
    _, found = check_policy(
        {
            "horizontal": {
                "min_replicas": 5,
                "max_replicas": 2,
                "tolerance": 1,
                "targets": [{"metric": "cpu_percnt", "target": 70}, {"metric": "rps"}],
                "behavior": {"scale_sideways": {}, "scale_up": {"policies": [{"type": "Nodes"}]}},
            }
        }
    )
    assert [p.loc for p in found] == [
        ("horizontal", "max_replicas"),
        ("horizontal", "tolerance"),
        ("horizontal", "behavior", "scale_sideways"),
        ("horizontal", "targets", 0, "metric"),
        ("horizontal", "targets", 1, "target"),
        ("horizontal", "behavior", "scale_up", "policies", 0, "type"),
        ("horizontal", "behavior", "scale_up", "policies", 0, "value"),
    ]


def test_notifications_and_command() -> None:
    policy = parse_policy(
        {
            "notifications": {
                "receivers": [
                    {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook"},
                    {"name": "chat", "kind": "slack", "url": "https://hooks.example/x"},
                    {"name": "mail", "kind": "email", "to": "ops@example.com", "timeout": "5s"},
                ],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
                "retries": 5,
            },
            "command": {"argv": "kubectl scale deploy/api --replicas=3", "dry_run": False},
        }
    )
    ops, chat, mail = policy.notifications.receivers
    assert (ops.kind, ops.url, chat.kind, mail.to, mail.timeout) == (
        "webhook",
        "http://127.0.0.1:9/hook",
        "slack",
        ("ops@example.com",),
        5.0,
    )
    assert policy.notifications.retries == 5
    assert policy.notifications.repeat_interval == 4 * 3600.0
    assert policy.command.argv == ("kubectl", "scale", "deploy/api", "--replicas=3")
    assert policy.command.dry_run is False
    _, found = check_policy(
        {
            "notifications": {
                "receivers": [
                    {"name": "a", "kind": "webhook"},
                    {"name": "b", "kind": "pager"},
                    {"name": "c", "kind": "slack", "url": "ftp://x"},
                    {"name": "d", "kind": "email"},
                    {"name": "d", "kind": "email", "to": ["x@y"]},
                ],
                "retries": -1,
            }
        }
    )
    assert [p.loc[-2:] for p in found] == [
        (0, "url"),
        (1, "kind"),
        (2, "url"),
        (3, "to"),
        (4, "name"),
        ("notifications", "retries"),
    ]


# -- scalewise.yaml ------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scalewise.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_config_reports_policy_problems_with_the_file_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n  interval: 0s\npolicy:\n  rules:\n"
        "    - {name: a, metric: latency_avg, above: 8s, action: scale_up}\n"
        "    - {name: b, metric: latency_avg, above: 8s, action: scale_up}\n"
        "    - {name: c, metric: latency_avg, above: 8s, action: scale_up, for: soon}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    lines = str(info.value).splitlines()
    assert f"{path}: policy.rules[2].for: expected {DURATION_EXPECTED}, got 'soon'" in lines
    assert any(line.startswith(f"{path}: metrics.interval:") for line in lines)


def test_policy_object(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "metrics: {interval: 10s}\n"), env={})
    assert config.policy is None
    assert config.policy_object() == Policy()
    text = "policy:\n  current_plan: starter\n  rules:\n    - " + str(rule()) + "\n"
    config = load_config(write(tmp_path, text), env={})
    assert config.policy_object().current_plan == "starter"
    assert config.policy_object().rules[0].threshold == 8.0
    assert load_config(write(tmp_path, "policy:\n"), env={}).policy_object() == Policy()
    assert config.model_dump(mode="json")["policy"]["rules"][0]["name"] == "r"
    assert PolicySection.model_validate(config.policy_object()).root == config.policy_object()


# -- flapping --------------------------------------------------------------------------------


def up_down(up: str, down: str, metric: str = "cpu_percent") -> Policy:
    return parse_policy(
        {
            "rules": [
                {"name": "up", "metric": metric, "condition": up, "action": "scale_up"},
                {"name": "down", "metric": metric, "condition": down, "action": "scale_down"},
            ]
        }
    )


@pytest.mark.parametrize(
    ("up", "down", "warning"),
    [
        ("> 70", "< 80", "overlap"),
        ("> 70", "> 50", "overlap"),
        ("> 70", "< 70", "touch"),
        (">= 70", "< 70", "touch"),
        ("> 70", "<= 70", "touch"),
        (">= 70", "<= 70", "overlap"),
        ("> 70", "< 30", None),
        ("> 70", "== 70", None),  # == and != make no band to compare
    ],
)
def test_flapping_warnings(up: str, down: str, warning: str | None) -> None:
    found = flapping_warnings(up_down(up, down))
    if warning is None:
        assert found == []
        return
    (text,) = found
    assert text.startswith("policy.rules: 'up' scales up when cpu_percent")
    assert warning in text
    assert ("would flap" in text) == (warning == "overlap")
    assert ("hysteresis" in text) == (warning == "touch")


def test_flapping_message_shows_thresholds_in_their_units() -> None:
    (text,) = flapping_warnings(up_down("> 2s", "< 3s", metric="latency_p95"))
    assert "latency_p95 > 2s" in text
    assert "latency_p95 < 3s" in text


def test_no_flapping_warning_across_metrics_or_actions() -> None:
    policy = parse_policy(
        {
            "rules": [
                {"name": "a", "metric": "cpu_percent", "above": 70, "action": "scale_up"},
                {"name": "b", "metric": "memory_percent", "below": 80, "action": "scale_down"},
                {"name": "c", "metric": "cpu_percent", "below": 80, "action": "notify"},
            ]
        }
    )
    assert flapping_warnings(policy) == []
