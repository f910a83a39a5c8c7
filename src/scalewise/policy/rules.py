"""Parse the ``policy:`` section of ``scalewise.yaml`` into a :class:`Policy`.

Every problem is collected with its path (``policy.rules[2].for``) and reported at once, in
one :class:`~scalewise.errors.ConfigError`, one problem per line. Thresholds are read by the
metric's kind: durations for latency (``2s``, ``250ms``), ``5%`` or ``0.05`` for ratios,
``80%`` or ``80`` for percents, ``400MB`` for memory in MB, plain numbers for counts.

A rule reads either way::

    - {name: slow, metric: latency_p95, window: 10m, above: 2s, for: 15m, action: scale_up}
    - {name: slow, metric: latency_p95, window: 10m, condition: "> 2s", for: 15m, action: scale_up}

``promql:`` makes a rule fleet-wide (Prometheus evaluates it); without ``metric:`` its
threshold is a plain number or a duration, in the expression's units, and ``Rule.metric`` is
``""``. When ``plans:`` is absent ``Policy.plans`` stays empty and the decision layer uses the
default catalog.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final

from scalewise.config.policy_model import (
    Fields,
    Loc,
    Problem,
    boolean,
    choice,
    dotted,
    duration,
    number,
    policy_error,
    read_command,
    read_notifications,
    read_plans,
    text,
    whole,
)
from scalewise.errors import ConfigError
from scalewise.policy.metrics import GAUGE_PREFIX, METRICS, close_metrics, format_value, metric_spec
from scalewise.policy.model import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Action,
    Comparison,
    Horizontal,
    HPAPolicy,
    HPARules,
    HPATarget,
    Plan,
    Policy,
    Rule,
)
from scalewise.policy.plans import DEFAULT_PLANS, find_plan
from scalewise.units import parse_percent, parse_size

__all__ = ["SEVERITIES", "check_policy", "flapping_warnings", "parse_policy", "parse_threshold"]

SEVERITIES: Final = ("info", "warning", "critical")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_EXPECTED: Final = "a name of letters, digits and '_', not starting with a digit"
_CONDITION: Final = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*")
_SIZE_MB: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
#: memory_mb is MiB (RSS / 2**20), as the seeds compute it; "400MB" there means 400 of those.
_MB_UNITS: Final = {"": 1.0, "b": 2.0**-20} | {
    prefix + suffix: factor
    for prefix, factor in (("k", 2.0**-10), ("m", 1.0), ("g", 1024.0), ("t", 1024.0**2))
    for suffix in ("", "b", "i", "ib")
}
_RATE: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(_NAME_EXPECTED)
    return value


def _labels(value: object) -> dict[str, str]:
    expected = "a mapping of label names (not alertname, severity, action) to strings"
    if not isinstance(value, Mapping):
        raise ValueError(expected)
    for key, item in value.items():
        bad_key = not isinstance(key, str) or not _NAME.fullmatch(key) or key.startswith("__")
        reserved = key in {"alertname", "severity", "action"}
        if bad_key or reserved or isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValueError(expected)
    return {str(k): str(v) for k, v in value.items()}


# -- thresholds by the metric's kind ---------------------------------------------------------


def parse_threshold(metric: str | None, value: object) -> float:
    """A threshold for ``metric`` in the metric's own unit; ValueError says what was expected.

    ``metric=None`` is a ``promql:`` rule: a plain number, or a duration (Prometheus seconds).
    """
    kind = metric_spec(metric).kind if metric else "promql"
    what = f"({metric} is a {kind} metric)" if metric else "(the PromQL expression's value)"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a threshold {what}")
    try:
        return _by_kind(kind, metric or "", value)
    except ValueError:
        raise ValueError(f"{_KIND_EXPECTED[kind]} {what}") from None


_KIND_EXPECTED: Final = {
    "duration": "a duration like '2s' or '250ms'",
    "ratio": "a percentage like '5%' or a fraction between 0 and 1",
    "percent": "a percentage like '80%' or a number of percent like 80",
    "megabytes": "a size like '400MB' or '1.5GB', or a number of MB (MB = 2**20 bytes)",
    "bytes": "a size like '512MB' or a number of bytes",
    "rate": "a number per second, or a rate like '300/m' or '5/s'",
    "count": "a plain number",
    "promql": "a plain number or a duration like '2s'",
}


def _by_kind(kind: str, metric: str, value: str | float) -> float:
    raw = value.strip().lower() if isinstance(value, str) else ""
    if kind == "duration" or (kind == "promql" and raw and not _is_number(raw)):
        return duration()(value)
    if kind == "ratio":
        return parse_percent(value)
    if kind == "percent":
        return number(raw[:-1] if raw.endswith("%") else value, minimum=0.0)
    if kind == "megabytes" and raw:
        match = _SIZE_MB.fullmatch(raw)
        if match is None or match.group(2) not in _MB_UNITS:
            raise ValueError(kind)
        return float(match.group(1)) * _MB_UNITS[match.group(2)]
    if kind == "bytes":
        return float(parse_size(value))
    if kind == "rate" and "/" in raw:
        amount, _, per = raw.partition("/")
        if per not in _RATE:
            raise ValueError(kind)
        return number(amount, minimum=0.0) / _RATE[per]
    floor = -math.inf if metric.startswith(GAUGE_PREFIX) or kind == "promql" else 0.0
    return number(value, minimum=floor)


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


# -- sections --------------------------------------------------------------------------------

_RULE_KEYS: Final = (
    *("name", "metric", "promql", "window", "above", "below", "condition", "for"),
    *("keep_firing_for", "action", "severity", "labels", "description"),
)
_POLICY_KEYS: Final = (
    *("preset", "evaluation_interval", "scale_down_requires", "cooldown", "current_plan"),
    *("instances", "rules", "horizontal", "plans", "notifications", "command", "in_app"),
)


def _metric(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("a catalog metric name")
    try:
        metric_spec(value)
    except ValueError:
        close = close_metrics(value)
        hint = f"did you mean {' or '.join(close)}?" if close else "one of " + ", ".join(METRICS)
        raise ValueError(f"a catalog metric or gauge:NAME ({hint})") from None
    return value


def _rule(f: Fields) -> Rule | None:
    name = f.need("name", _name, _NAME_EXPECTED)
    metric = f.get("metric", _metric, None)
    promql = f.get("promql", text, None)
    if "metric" not in f.data and promql is None:
        f.fail("metric", "a catalog metric, or a promql: expression (one is required)")
    op, threshold = _condition(f, metric, known="metric" not in f.data or metric is not None)
    window = f.get("window", duration(minimum=1e-9), 300.0)
    for_ = f.get("for", duration(), 0.0)
    keep = f.get("keep_firing_for", duration(), 0.0)
    action = f.need("action", choice(a.value for a in Action), "one of " + ", ".join(Action))
    severity = f.get("severity", choice(SEVERITIES), "warning")
    labels: dict[str, str] = f.get("labels", _labels, {})
    description = f.get("description", text, "")
    if name is None or op is None or threshold is None or action is None:
        return None
    if metric is None and promql is None:
        return None
    return Rule(
        name=str(name),
        metric=metric or "",
        op=Comparison(op),
        threshold=threshold,
        action=Action(action),
        window=window,
        for_=for_,
        keep_firing_for=keep,
        severity=severity,
        labels=labels,
        promql=promql,
        description=description,
    )


def _condition(f: Fields, metric: str | None, known: bool) -> tuple[str | None, float | None]:
    """``above:``, ``below:`` or ``condition: "> 8s"``: the comparison and its threshold."""
    given = [key for key in ("above", "below", "condition") if key in f.data]
    if len(given) != 1:
        expected = "exactly one of above:, below: or condition: (e.g. above: 8s, condition: '> 8s')"
        f.fail(given[1] if given else "above", expected, given or None)
        return None, None
    key, value = given[0], f.data[given[0]]
    op = ">" if key == "above" else "<"
    if key == "condition":
        match = _CONDITION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            f.fail(key, "a comparison like '> 8s' (operators: > >= < <= == !=)", value)
            return None, None
        op, value = match.group(1), match.group(2)
    if not known:  # the metric is already reported; its kind is unknown
        return op, 0.0
    try:
        return op, parse_threshold(metric, value)
    except ValueError as exc:
        f.fail(key, str(exc), f.data[key])
        return op, None


def _rules(parent: Fields) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: dict[str, Loc] = {}
    for loc, item in parent.items("rules"):
        f = Fields(item, loc, parent.problems, _RULE_KEYS)
        if not f.ok:
            continue
        rule = _rule(f)
        name = f.data.get("name")
        if isinstance(name, str) and name in seen:
            f.fail("name", f"a name not used by an earlier rule ({dotted(seen[name])})", name)
        elif isinstance(name, str):
            seen[name] = loc
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _targets(parent: Fields) -> tuple[HPATarget, ...]:
    targets = []
    for loc, item in parent.items("targets"):
        f = Fields(item, loc, parent.problems, ("metric", "target"))
        metric = f.need("metric", _metric, "a catalog metric")
        if metric is None:
            continue
        target = f.need("target", partial(parse_threshold, metric), "the value per replica")
        if target is not None and target <= 0:
            f.fail("target", "a target greater than 0", f.data["target"])
        elif target is not None:
            targets.append(HPATarget(metric, target))
    return tuple(targets)


def _hpa_rules(parent: Fields, key: str, default: HPARules) -> HPARules:
    f = Fields(parent.data.get(key), (*parent.loc, key), parent.problems, _HPA_RULES_KEYS)
    policies = []
    for loc, item in f.items("policies"):
        p = Fields(item, loc, f.problems, ("type", "value", "period"))
        kind = p.need("type", choice(("Pods", "Percent")), "Pods or Percent")
        value = p.need("value", whole(1), "a whole number of at least 1")
        period = p.get("period", duration(minimum=1e-9), 15.0)
        if kind is not None and value is not None:
            policies.append(HPAPolicy(kind, value, period))
    return HPARules(
        stabilization_window=f.get(
            "stabilization_window", duration(), default.stabilization_window
        ),
        select_policy=f.get("select_policy", choice(("Max", "Min", "Disabled")), "Max"),
        policies=tuple(policies) if "policies" in f.data else default.policies,
    )


_HPA_RULES_KEYS: Final = ("stabilization_window", "select_policy", "policies")
_HORIZONTAL_KEYS: Final = ("min_replicas", "max_replicas", "tolerance", "targets", "behavior")


def _horizontal(parent: Fields) -> Horizontal | None:
    if parent.data.get("horizontal") is None:
        return None
    f = Fields(parent.data["horizontal"], ("horizontal",), parent.problems, _HORIZONTAL_KEYS)
    low = f.get("min_replicas", whole(1), 1)
    high = f.get("max_replicas", whole(1), max(10, low))
    if high < low:
        f.fail("max_replicas", f"a whole number of at least min_replicas ({low})", high)
    tolerance = f.get("tolerance", lambda v: number(v, "a fraction from 0 to 1", 0.0), 0.1)
    if tolerance >= 1:
        f.fail("tolerance", "a fraction from 0 up to (not including) 1", tolerance)
    behavior = Fields(f.data.get("behavior"), ("horizontal", "behavior"), f.problems, _SIDES)
    return Horizontal(
        targets=_targets(f),
        min_replicas=low,
        max_replicas=high,
        tolerance=tolerance,
        scale_up=_hpa_rules(behavior, "scale_up", DEFAULT_SCALE_UP),
        scale_down=_hpa_rules(behavior, "scale_down", DEFAULT_SCALE_DOWN),
    )


_SIDES: Final = ("scale_up", "scale_down")


def _current_plan(f: Fields, catalog: tuple[Plan, ...], name: str | None) -> Plan | None:
    """The current plan in ``plans:`` (or the default catalog when absent), named loosely."""
    if name is None:
        return None
    try:
        return find_plan(catalog, name)
    except ConfigError as exc:
        where = "the default catalog" if catalog is DEFAULT_PLANS else "plans:"
        names = exc.expected.removeprefix("one of ")
        f.fail("current_plan", f"a plan of {where} (one of {names})", name)
        return None


def parse_policy(data: object, source: str = "scalewise.yaml") -> Policy:
    """The ``policy:`` mapping (plain YAML data) as a Policy; one ConfigError lists all faults."""
    policy, problems = check_policy(data)
    if problems:
        raise policy_error(source, problems)
    return policy


def check_policy(data: object) -> tuple[Policy, list[Problem]]:
    """The policy (with defaults where fields were bad) and every problem found, in order."""
    problems: list[Problem] = []
    f = Fields(data, (), problems, _POLICY_KEYS)
    default = Policy()
    plans = read_plans(f)
    current = f.get("current_plan", text, None)
    instances = f.get("instances", whole(1), 1)
    plan = _current_plan(f, plans or DEFAULT_PLANS, current)
    if plan is not None and instances > plan.max_instances:
        expected = f"at most {plan.max_instances}, the max_instances of plan {plan.name}"
        f.fail("instances", expected, instances)
    policy = Policy(
        rules=_rules(f),
        evaluation_interval=f.get("evaluation_interval", duration(minimum=1e-9), 60.0),
        scale_down_requires=f.get("scale_down_requires", choice(("all", "any")), "all"),
        cooldown=f.get("cooldown", duration(), default.cooldown),
        plans=plans,
        current_plan=current,
        instances=instances,
        horizontal=_horizontal(f),
        notifications=read_notifications(f),
        command=read_command(f),
        preset=f.get("preset", text, None),
        in_app=f.get("in_app", boolean, True),
    )
    order = {key: i for i, key in enumerate(f.data)}  # report in the file's order of keys
    problems.sort(key=lambda p: order.get(p.loc[0], -1) if p.loc else -1)
    return policy, problems


# -- flapping --------------------------------------------------------------------------------

Band = tuple[float, bool, float, bool]  # low, low included, high, high included
_BANDS: Final[Mapping[Comparison, Callable[[float], Band]]] = {
    Comparison.GT: lambda t: (t, False, math.inf, False),
    Comparison.GE: lambda t: (t, True, math.inf, False),
    Comparison.LT: lambda t: (-math.inf, False, t, False),
    Comparison.LE: lambda t: (-math.inf, False, t, True),
}


def flapping_warnings(policy: Policy) -> list[str]:
    """Warnings for a metric whose scale-down band overlaps or touches its scale-up band.

    Up when cpu > 70 and down when cpu < 80: 75 % asks for both, so the policy would flap.
    Up when > 70 and down when < 70 leave no gap: a value wobbling around 70 scales up and
    down in turn. Leave a gap (hysteresis) between the two thresholds.
    """
    warnings = []
    ups = [r for r in policy.rules if r.action is Action.SCALE_UP and r.op in _BANDS]
    downs = [r for r in policy.rules if r.action is Action.SCALE_DOWN and r.op in _BANDS]
    for up in ups:
        for down in downs:
            if up.metric and up.metric == down.metric and up.promql == down.promql:
                problem = _clash(_BANDS[up.op](up.threshold), _BANDS[down.op](down.threshold))
                if problem is not None:
                    warnings.append(_flap_message(up, down, problem))
    return warnings


def _clash(up: Band, down: Band) -> str | None:
    low, low_in = max((up[0], up[1]), (down[0], down[1]), key=lambda b: (b[0], not b[1]))
    high, high_in = min((up[2], up[3]), (down[2], down[3]), key=lambda b: (b[0], b[1]))
    if low < high or (low == high and low_in and high_in):
        return "overlap"
    if low == high:
        return "touch"
    return None


def _flap_message(up: Rule, down: Rule, problem: str) -> str:
    def side(rule: Rule) -> str:
        return f"{rule.metric} {rule.op.value} {format_value(rule.metric, rule.threshold)}"

    head = (
        f"policy.rules: {up.name!r} scales up when {side(up)}"
        f" and {down.name!r} scales down when {side(down)}"
    )
    if problem == "overlap":
        return f"{head}: the bands overlap (a value can ask for both), so the policy would flap"
    return (
        f"{head}: the bands touch, so a value wobbling at the threshold would scale up and down"
        " in turn; leave a gap between them (hysteresis)"
    )
