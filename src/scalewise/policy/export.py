"""The same policy as a Prometheus rule file, for a team that grows into Prometheus.

Each rule becomes an alerting rule with the same window, comparison, threshold, ``for:`` and
``keep_firing_for:`` (Prometheus evaluates them the way scalewise does), over the series
scalewise's ``/metrics`` exposes. Where PromQL can only approximate a catalog metric, a
comment above the rule says how; a rule with no PromQL equivalent is left out with a comment
saying why. Rules with ``promql:`` are exported as written.

Example::

    text = export_prometheus_rules(config.policy_object(), selector='job="api"')
    Path("scalewise.rules.yml").write_text(text)  # then: promtool check rules scalewise.rules.yml
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

import yaml

from scalewise.policy.metrics import GAUGE_PREFIX, format_value
from scalewise.policy.model import Policy, Rule

_REQUESTS: Final = "scalewise_http_requests_total"
_DURATION: Final = "scalewise_http_request_duration_seconds"
_QUEUE: Final = "scalewise_http_request_queue_seconds"

_NOTES: Final[Mapping[str, str]] = {
    "latency_p": "Prometheus interpolates percentiles within its `le` buckets; scalewise's"
    " own are within 1 %.",
    "latency_max": "PromQL has no exact maximum: this is the upper edge of the slowest bucket.",
    "concurrency_peak": "Prometheus sees the in-flight gauge only when it scrapes, so peaks"
    " between scrapes are missed; scalewise's own peak is exact.",
    "per_instance": "Per instance (the busiest one), as scalewise measures one instance.",
}


def _quantile(q: str, histogram: str = _DURATION) -> Callable[[Callable[..., str], str], str]:
    return lambda m, w: (
        f"histogram_quantile({q}, sum by (le) (rate({m(histogram + '_bucket')}[{w}])))"
    )


#: Catalog metric → PromQL over a window ``w``; ``m(name, matcher)`` adds the selector.
_PROMQL: Final[Mapping[str, Callable[[Callable[..., str], str], str]]] = {
    "latency_avg": lambda m, w: (
        f"sum(rate({m(_DURATION + '_sum')}[{w}])) / sum(rate({m(_DURATION + '_count')}[{w}]))"
    ),
    "latency_p50": _quantile("0.5"),
    "latency_p90": _quantile("0.9"),
    "latency_p95": _quantile("0.95"),
    "latency_p99": _quantile("0.99"),
    "latency_max": _quantile("1"),
    "rps": lambda m, w: f"sum(rate({m(_REQUESTS)}[{w}]))",
    "requests_per_day": lambda m, w: f"sum(rate({m(_REQUESTS)}[{w}])) * 86400",
    "error_rate": lambda m, w: (
        f"sum(rate({m(_REQUESTS, 'status=' + json.dumps('5xx'))}[{w}]))"
        f" / sum(rate({m(_REQUESTS)}[{w}]))"
    ),
    "concurrency_peak": lambda m, w: (
        f"max_over_time(sum({m('scalewise_http_requests_in_flight')})[{w}:])"
    ),
    "concurrency_avg": lambda m, w: f"sum(rate({m(_DURATION + '_sum')}[{w}]))",
    "cpu_percent": lambda m, w: (
        f"100 * max(sum by (instance) (rate({m('process_cpu_seconds_total')}[{w}])))"
    ),
    "memory_mb": lambda m, w: (
        "max(sum by (instance) (avg_over_time("
        f"{m('process_resident_memory_bytes')}[{w}]))) / 1048576"
    ),
    "memory_percent": lambda m, w: (
        "100 * max(sum by (instance) (avg_over_time("
        f"{m('process_resident_memory_bytes')}[{w}]))"
        f" / sum by (instance) ({m('scalewise_container_memory_limit_bytes')}))"
    ),
    "event_loop_lag": lambda m, w: (
        f"max(max_over_time({m('scalewise_event_loop_lag_seconds')}[{w}]))"
    ),
    "busy_ratio": lambda m, w: (
        f"sum(rate({m('scalewise_worker_busy_seconds_total')}[{w}]))"
        f" / sum(avg_over_time({m('scalewise_workers')}[{w}]))"
    ),
    "queue_time_p95": _quantile("0.95", _QUEUE),
}


def prometheus_duration(seconds: float) -> str:
    """``5400`` → ``'1h30m'``, ``0.25`` → ``'250ms'`` (Prometheus's duration syntax)."""
    left = round(seconds * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    if left:
        parts.append(f"{left}ms")
    return "".join(parts) or "0s"


_dur = prometheus_duration


def rule_expression(rule: Rule, selector: str = "") -> str | None:
    """The PromQL condition of ``rule`` (``None`` when its metric has no PromQL equivalent)."""
    if rule.promql:
        value = rule.promql.strip()
    else:
        build = _PROMQL.get(rule.metric)
        if build is None:
            return None

        def m(name: str, *matchers: str) -> str:
            inner = ",".join(x for x in (*matchers, selector) if x)
            return f"{name}{{{inner}}}" if inner else name

        value = build(m, prometheus_duration(rule.window))
    return f"({value}) {rule.op.value} {rule.threshold!r}"


def _notes(rule: Rule) -> list[str]:
    if rule.promql:
        return []
    metric = rule.metric
    keys = ["latency_p"] if metric.startswith("latency_p") or metric == "queue_time_p95" else []
    keys += [metric] if metric in {"latency_max", "concurrency_peak"} else []
    keys += ["per_instance"] if metric in {"cpu_percent", "memory_mb", "memory_percent"} else []
    return [_NOTES[key] for key in keys]


def _missing(metric: str) -> str:
    why = "not in PromQL"
    if metric.startswith(GAUGE_PREFIX):
        why = "a user gauge, which scalewise's /metrics does not expose"
    return f"{metric} is {why}; give the rule a promql: expression to export it."


def _entry(rule: Rule, expr: str) -> dict[str, object]:
    shown = format_value(rule.metric, rule.threshold) if rule.metric else f"{rule.threshold:g}"
    condition = f"{rule.op.value} {shown}"
    what = rule.promql.strip() if rule.promql else f"{rule.metric} over {_dur(rule.window)}"
    during = f" for {_dur(rule.for_)}" if rule.for_ else ""
    entry: dict[str, object] = {"alert": rule.name, "expr": expr}
    if rule.for_:
        entry["for"] = _dur(rule.for_)
    if rule.keep_firing_for:
        entry["keep_firing_for"] = _dur(rule.keep_firing_for)
    entry["labels"] = {**rule.labels, "severity": rule.severity, "action": rule.action.value}
    entry["annotations"] = {
        "summary": f"{what} {condition}{during}",
        "description": rule.description or f"{what} is {{{{ $value }}}} ({condition}{during}).",
    }
    return entry


def export_prometheus_rules(policy: Policy, group: str = "scalewise", selector: str = "") -> str:
    """``policy`` as a Prometheus rule file (YAML text with explanatory comments).

    ``selector`` adds label matchers to every series, e.g. ``'job="api"'``, so that
    ``process_*`` series of other targets are not counted.
    """
    lines = [
        "# Prometheus alerting rules exported by scalewise (`scalewise export-rules`).",
        "# The same windows, thresholds, for: and keep_firing_for: as the scalewise policy"
        + (f" (preset {policy.preset})." if policy.preset else "."),
        "groups:",
        f"  - name: {json.dumps(group)}",
        f"    interval: {prometheus_duration(policy.evaluation_interval)}",
        "    rules:",
    ]
    exported = 0
    for rule in policy.rules:
        expr = rule_expression(rule, selector)
        if expr is None:
            lines.append(f"      # {rule.name} left out: {_missing(rule.metric)}")
            continue
        lines += [f"      # {note}" for note in _notes(rule)]
        entry = [_entry(rule, expr)]
        dumped = yaml.safe_dump(entry, sort_keys=False, width=10**6, allow_unicode=True)
        lines += ["      " + line for line in dumped.splitlines()]
        exported += 1
    if not exported:
        lines[5] = "    rules: []"
    return "\n".join(lines) + "\n"
