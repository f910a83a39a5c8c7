"""Thresholds in k6's syntax, plus windowed thresholds.

Following k6 (grafana.com/docs/k6/latest/using-k6/thresholds): a threshold is
``aggregation operator number`` on a metric, e.g. ``http_req_duration: ['p(95)<500']``.
Trends (``http_req_duration``, ``http_req_waiting``, ``http_req_connecting``,
``iteration_duration``, and our ``http_req_service`` and ``send_lag``) take ``avg``, ``min``,
``med``, ``max`` and ``p(N)`` in milliseconds; rates (``http_req_failed``, ``checks``) take
``rate``; counters (``http_reqs``, ``iterations``, ``dropped_iterations``, ``data_received``,
``data_sent``) take ``count`` and ``rate`` (per second); gauges (``vus``, ``vus_max``) take
``value``. Operators: ``<``, ``<=``, ``>``, ``>=``, ``==`` (``===``), ``!=``. The object form
``{threshold: 'p(95)<500', abortOnFail: true, delayAbortEval: '10s'}`` stops the run once the
threshold fails, evaluation starting ``delayAbortEval`` after the start. As in k6, a metric
with no samples aggregates to 0. Sub-metrics filter by one tag: ``{name:…}`` for
``http_req_duration``, ``http_req_failed`` and ``http_reqs``; ``{status:…}`` for ``http_reqs``;
``{scenario:…}`` for ``iteration_duration`` and ``iterations``; ``{check:…}`` for ``checks``.

Beyond k6, whose thresholds judge only the whole run (grafana/k6#1737): a *windowed*
threshold, ``{threshold: 'p(95)<500', window: '1m'}`` or ``'p(95)<500 over 1m'``, must hold
over EVERY window of that length, the window sliding by one interval of the series; the
outcome reports the worst window and when it was. Windows apply to whole metrics only.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from scalewise.errors import ScenarioError
from scalewise.loadtest.results import IntervalStats, RunResult, ThresholdOutcome, Totals
from scalewise.metrics.histogram import Histogram
from scalewise.units import DURATION_EXPECTED, parse_duration

__all__ = [
    "METRICS",
    "Threshold",
    "ThresholdOutcome",
    "evaluate",
    "parse_cli_threshold",
    "parse_thresholds",
    "should_abort",
]

TREND_AGGS: Final = ("avg", "min", "med", "max", "p(N)")
METRICS: Final[dict[str, str]] = {
    "http_req_duration": "trend",
    "http_req_waiting": "trend",
    "http_req_connecting": "trend",
    "http_req_service": "trend",
    "send_lag": "trend",
    "iteration_duration": "trend",
    "http_req_failed": "rate",
    "checks": "rate",
    "http_reqs": "counter",
    "iterations": "counter",
    "dropped_iterations": "counter",
    "data_received": "counter",
    "data_sent": "counter",
    "vus": "gauge",
    "vus_max": "gauge",
}
_AGGS: Final = {"trend": TREND_AGGS, "rate": ("rate",), "counter": ("count", "rate"),
                "gauge": ("value",)}  # fmt: skip
_EXAMPLES: Final = {"trend": "p(95)<500", "rate": "rate<0.01", "counter": "count>100",
                    "gauge": "value<50"}  # fmt: skip
_TAGS: Final = {
    "name": ("http_req_duration", "http_req_failed", "http_reqs"),
    "status": ("http_reqs",),
    "scenario": ("iteration_duration", "iterations"),
    "check": ("checks",),
}
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "===": operator.eq, "!=": operator.ne,
}  # fmt: skip
_METRIC_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\{([^{}]*)\})?\s*")
_EXPR_RE = re.compile(
    r"\s*(avg|min|max|med|count|rate|value|p\(\s*(\d+(?:\.\d+)?)\s*\))\s*"
    r"(<=|>=|===|==|!=|<|>)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s+over\s+(\S+))?\s*"
)
_CLI_RE = re.compile(r"\s*([^:{}]+(?:\{[^{}]*\})?)\s*:\s*(.+)")
_OBJECT_KEYS: Final = {
    "threshold": "threshold", "abortOnFail": "abort_on_fail", "abort_on_fail": "abort_on_fail",
    "delayAbortEval": "delay_abort_eval", "delay_abort_eval": "delay_abort_eval",
    "window": "window",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold. ``aggregation`` is ``avg|min|med|max|p|rate|count|value``;
    ``percentile`` is N of ``p(N)``; ``window`` and ``delay_abort_eval`` are seconds."""

    metric: str
    aggregation: str
    op: str
    value: float
    expression: str
    tag: tuple[str, str] | None = None
    percentile: float = 0.0
    abort_on_fail: bool = False
    delay_abort_eval: float = 0.0
    window: float | None = None

    @property
    def label(self) -> str:
        """The metric as written in k6 style, e.g. ``http_req_duration{name:login}``."""
        return self.metric if self.tag is None else f"{self.metric}{{{self.tag[0]}:{self.tag[1]}}}"

    @property
    def kind(self) -> str:
        return METRICS[self.metric]

    def passes(self, observed: float) -> bool:
        return _OPS[self.op](observed, self.value)


# -- parsing ---------------------------------------------------------------------------


def parse_thresholds(
    spec: Mapping[str, Sequence[str | Mapping[str, object]]], source: str
) -> list[Threshold]:
    """Thresholds from a scenario's ``thresholds:`` mapping (k6's ``options.thresholds``).

    Raises :class:`ScenarioError` naming ``source`` and a path like
    ``thresholds.http_req_duration[0]`` for an unknown metric, tag or aggregation, or an
    expression that does not parse.
    """
    if not isinstance(spec, Mapping):
        raise ScenarioError(
            source, "thresholds", "a mapping of metric to a list of expressions", spec
        )
    out: list[Threshold] = []
    for key, items in spec.items():
        metric, tag = _parse_metric(str(key), source, f"thresholds.{key}")
        entries = [items] if isinstance(items, str | Mapping) else items
        if not isinstance(entries, Sequence) or not entries:
            raise ScenarioError(
                source,
                f"thresholds.{key}",
                f"a list of expressions like '{_EXAMPLES[METRICS[metric]]}'",
                items,
            )
        for i, item in enumerate(entries):
            out.append(_parse_item(metric, tag, item, source, f"thresholds.{key}[{i}]"))
    return out


def parse_cli_threshold(text: str, source: str = "--threshold") -> Threshold:
    """``'http_req_duration: p(95)<300'`` (optionally ``… over 1m``) from the command line."""
    match = _CLI_RE.fullmatch(text)
    if match is None:
        raise ScenarioError(
            source, "threshold", "'METRIC: EXPRESSION' like 'http_req_duration: p(95)<300'", text
        )
    metric, tag = _parse_metric(match.group(1), source, "threshold")
    return _parse_item(metric, tag, match.group(2), source, match.group(1).strip())


def _parse_metric(text: str, source: str, path: str) -> tuple[str, tuple[str, str] | None]:
    match = _METRIC_RE.fullmatch(text)
    if match is None or match.group(1) not in METRICS:
        name = match.group(1) if match else text
        raise ScenarioError(source, path, f"a metric, one of {', '.join(METRICS)}", name)
    metric, tags = match.group(1), match.group(2)
    if tags is None:
        return metric, None
    pairs = [p.split(":", 1) for p in tags.split(",") if p.strip()]
    allowed = [t for t, metrics in _TAGS.items() if metric in metrics]
    if len(pairs) != 1 or len(pairs[0]) != 2 or pairs[0][0].strip() not in allowed:
        expected = f"one tag filter like {{{allowed[0]}:value}}" if allowed else "no tag filter"
        raise ScenarioError(source, path, f"{expected} on {metric}", text)
    name, value = pairs[0][0].strip(), pairs[0][1].strip().strip("'\"")
    return metric, (name, value)


def _parse_item(
    metric: str, tag: tuple[str, str] | None, item: object, source: str, path: str
) -> Threshold:
    options = _object_options(item, source, path) if isinstance(item, Mapping) else {}
    if isinstance(item, Mapping):
        item = options.pop("threshold", None)
    kind = METRICS[metric]
    expected = f"an expression like '{_EXAMPLES[kind]}'"
    if not isinstance(item, str) or (match := _EXPR_RE.fullmatch(item)) is None:
        raise ScenarioError(source, path, expected, item)
    agg_text, pct, op, number, over = match.groups()
    agg = "p" if pct is not None else agg_text
    if (agg == "p" and kind != "trend") or (agg != "p" and agg not in _AGGS[kind]):
        raise ScenarioError(
            source,
            path,
            f"{', '.join(_AGGS[kind])} for the {kind} {metric}, as in '{_EXAMPLES[kind]}'",
            item,
        )
    if pct is not None and not 0 <= float(pct) <= 100:
        raise ScenarioError(source, path, "a percentile p(N) with N between 0 and 100", item)
    abort = options.get("abort_on_fail", False)
    if not isinstance(abort, bool):
        raise ScenarioError(source, f"{path}.abortOnFail", "true or false", abort)
    window = _duration(options.get("window", over), source, f"{path}.window")
    if window is not None and (window <= 0 or tag is not None):
        raise ScenarioError(
            source, f"{path}.window", "a window > 0 on a whole metric (no tag filter)", item
        )
    return Threshold(
        metric, agg, op, float(number), item.strip(), tag, float(pct or 0.0), abort,
        _duration(options.get("delay_abort_eval"), source, f"{path}.delayAbortEval") or 0.0, window,
    )  # fmt: skip


def _object_options(item: Mapping[str, object], source: str, path: str) -> dict[str, object]:
    """k6's object form (``threshold``, ``abortOnFail``, ``delayAbortEval``) plus ``window``;
    snake_case spellings are accepted too."""
    options: dict[str, object] = {}
    for key, value in item.items():
        if key not in _OBJECT_KEYS:
            expected = "one of threshold, abortOnFail, delayAbortEval, window"
            raise ScenarioError(source, f"{path}.{key}", expected, key)
        options[_OBJECT_KEYS[key]] = value
    return options


def _duration(value: object, source: str, path: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise ScenarioError(source, path, DURATION_EXPECTED, value) from None


# -- evaluation ------------------------------------------------------------------------


def _trend_ms(hist: Histogram | None, th: Threshold) -> float:
    """A trend aggregation in milliseconds (0 when there are no samples, as in k6)."""
    if hist is None or not hist.count:
        return 0.0
    agg = th.aggregation
    if agg == "avg":
        value = hist.mean
    elif agg in {"min", "max"}:
        value = hist.min if agg == "min" else hist.max
    else:
        value = hist.quantile(0.5 if agg == "med" else th.percentile / 100.0)
    return value * 1000.0


def _tagged_trend(totals: Totals, th: Threshold) -> Histogram | None:
    if th.tag is None:
        return totals.trends.get(th.metric)
    table = totals.names if th.tag[0] == "name" else totals.scenarios
    stats = table.get(th.tag[1])
    return stats.duration if stats is not None else None


def _count(totals: Totals, th: Threshold) -> int:
    tag = th.tag
    if tag is not None and tag[0] == "status":
        return totals.statuses.get(int(tag[1]), 0) if tag[1].isdigit() else 0
    if tag is not None:
        table = totals.names if tag[0] == "name" else totals.scenarios
        return table[tag[1]].requests if tag[1] in table else 0
    return {"http_reqs": totals.requests, "iterations": totals.iterations,
            "dropped_iterations": totals.dropped, "data_received": totals.received,
            "data_sent": totals.sent}[th.metric]  # fmt: skip


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def observe(th: Threshold, totals: Totals) -> float:
    """The value the threshold compares, from whole-run (or so-far) totals."""
    kind, tag = th.kind, th.tag
    if kind == "trend":
        return _trend_ms(_tagged_trend(totals, th), th)
    if th.metric == "http_req_failed":
        if tag is None:
            return _ratio(totals.failed, totals.requests)
        stats = totals.names.get(tag[1])
        return _ratio(stats.failed, stats.requests) if stats else 0.0
    if th.metric == "checks":
        passed, failed = totals.checks.get(tag[1], [0, 0]) if tag else (
            totals.checks_passed, totals.checks_failed)  # fmt: skip
        return _ratio(passed, passed + failed)
    if kind == "counter":
        count = _count(totals, th)
        if th.aggregation == "count":
            return float(count)
        return count / totals.elapsed if totals.elapsed > 0 else 0.0
    return float(totals.vus if th.metric == "vus" else totals.vus_max)


_INTERVAL_COUNTS: Final = {"http_reqs": "requests", "iterations": "iterations",
                           "dropped_iterations": "dropped", "data_received": "received",
                           "data_sent": "sent"}  # fmt: skip


class _Window:
    """Running aggregates over a sliding run of intervals (whole metrics only)."""

    def __init__(self, th: Threshold) -> None:
        self.th = th
        self.hist = Histogram()
        self.num = self.den = 0
        self.width = 0.0
        self.members: deque[IntervalStats] = deque()  # in the order added

    def _parts(self, iv: IntervalStats) -> tuple[int, int]:
        metric = self.th.metric
        if metric == "http_req_failed":
            return iv.failed, iv.requests
        if metric == "checks":
            return iv.checks_passed, iv.checks_passed + iv.checks_failed
        if metric in _INTERVAL_COUNTS:
            return getattr(iv, _INTERVAL_COUNTS[metric]), 0
        return 0, 0

    def add(self, iv: IntervalStats, sign: int = 1) -> None:
        num, den = self._parts(iv)
        self.num, self.den = self.num + sign * num, self.den + sign * den
        self.width += sign * iv.width
        if self.th.kind == "trend" and self.th.metric in iv.trends:
            hist = iv.trends[self.th.metric]
            if sign > 0:
                self.hist.merge(hist)
            else:
                self.hist.subtract(hist)
        if sign > 0:
            self.members.append(iv)
        else:  # only the oldest leaves a sliding window
            self.members.popleft()

    def value(self) -> float:
        th = self.th
        if th.kind == "trend":
            return _trend_ms(self.hist, th)
        if th.kind == "rate":
            return _ratio(self.num, self.den)
        if th.kind == "counter":
            return float(self.num) if th.aggregation == "count" else _ratio_f(self.num, self.width)
        field = "vus" if th.metric == "vus" else "vus_max"
        return float(max((getattr(iv, field) for iv in self.members), default=0))


def _ratio_f(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _window_values(
    th: Threshold, series: Sequence[IntervalStats], window: float
) -> list[tuple[float, float, float]]:
    """``(value, start, end)`` for every full window sliding by one interval; the whole
    series as one window when the run was shorter than the window."""
    acc, out, j, eps = _Window(th), [], 0, 1e-9
    for i, first in enumerate(series):
        while j < len(series) and (j == i or series[j].end - first.start <= window + eps):
            acc.add(series[j])
            j += 1
        if series[j - 1].end - first.start >= window - eps:
            out.append((acc.value(), first.start, series[j - 1].end))
        acc.add(first, -1)
    if not out and series:
        whole = _Window(th)
        for iv in series:
            whole.add(iv)
        out.append((whole.value(), series[0].start, series[-1].end))
    return out


def _badness(th: Threshold, value: float) -> tuple[bool, float]:
    """Sort key: failing first, then the farthest on the wrong side of the limit."""
    lean = value if th.op in {"<", "<="} else -value if th.op in {">", ">="} else 0.0
    return (not th.passes(value), lean)


def _judge(th: Threshold, source: RunResult | Totals) -> ThresholdOutcome:
    totals = source.totals if isinstance(source, RunResult) else source
    series = source.series if isinstance(source, RunResult) else []
    if th.window is None or not series:
        observed = observe(th, totals)
        ok = th.passes(observed)
        return ThresholdOutcome(
            th.label, th.expression, ok, observed, None, th.abort_on_fail and not ok
        )
    values = _window_values(th, series, th.window)
    observed, start, end = max(values, key=lambda v: _badness(th, v[0]))
    ok = all(th.passes(v) for v, _, _ in values)
    return ThresholdOutcome(
        th.label, th.expression, ok, observed, (start, end), th.abort_on_fail and not ok
    )


def evaluate(thresholds: Sequence[Threshold], result: RunResult | Totals) -> list[ThresholdOutcome]:
    """Judge every threshold on a finished (or live) result.

    A windowed threshold passes only if it holds over every full window sliding by one
    interval of ``result.series``; given bare :class:`Totals` (no series) it is judged on
    the totals as one window.
    """
    return [_judge(th, result) for th in thresholds]


def should_abort(
    thresholds: Sequence[Threshold], live: RunResult | Totals, elapsed: float
) -> list[ThresholdOutcome]:
    """The failing ``abortOnFail`` thresholds whose ``delayAbortEval`` has passed (empty:
    keep running). Cheap enough to call every interval: only abort thresholds are judged,
    and a windowed one only on the latest full window of ``live.series`` (bare
    :class:`Totals` have no series, so windowed thresholds wait for a :class:`RunResult`)."""
    out = []
    for th in thresholds:
        if not th.abort_on_fail or elapsed < th.delay_abort_eval:
            continue
        if th.window is None:
            outcome: ThresholdOutcome | None = _judge(th, live)
        elif isinstance(live, RunResult):
            outcome = _judge_latest(th, live.series, th.window)
        else:
            continue
        if outcome is not None and not outcome.ok:
            out.append(outcome)
    return out


def _judge_latest(
    th: Threshold, series: Sequence[IntervalStats], window: float
) -> ThresholdOutcome | None:
    """The latest full window only (``None`` until the run has lasted one window)."""
    acc = _Window(th)
    for iv in reversed(series):
        if acc.members and series[-1].end - iv.start > window + 1e-9:
            break
        acc.add(iv)
    if not acc.members or series[-1].end - acc.members[-1].start < window - 1e-9:
        return None
    value = acc.value()
    ok = th.passes(value)
    span = (acc.members[-1].start, series[-1].end)
    return ThresholdOutcome(th.label, th.expression, ok, value, span, not ok)
