"""The HTML report: one self-contained file, inline SVG charts, no scripts.

Split from :mod:`scalewise.loadtest.report` (which re-exports :func:`html_report`,
:func:`write_html` and :func:`histogram_bins`); the figures come from the same helpers as the
text and JSON summaries, so the three never disagree. The report module loads this one lazily,
so importing either first works.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from scalewise.charts import bar_chart, html_page, html_table, line_chart
from scalewise.loadtest.report import (
    _TREND_COLUMNS,
    _metrics,
    _name_rows,
    _notes,
    _threshold_rows,
    coordinated_omission,
)
from scalewise.loadtest.results import TRENDS, IntervalStats, RunResult, Totals
from scalewise.metrics.histogram import Histogram, bucket_value


def histogram_bins(hist: Histogram, bins: int = 40) -> list[tuple[str, float]]:
    """The latency distribution as ``(label in ms, count)`` on log-spaced bins."""
    buckets = [(bucket_value(i), n) for i, n in hist.buckets()]
    if not buckets:
        return []
    low = max(min(v for v, _ in buckets), 1e-6)
    high = max(*(v for v, _ in buckets), low * 1.0001)
    ratio = (high / low) ** (1 / bins)
    counts = [0] * bins
    for value, n in buckets:
        index = int(math.log(max(value, low) / low) / math.log(ratio)) if ratio > 1 else 0
        counts[min(max(index, 0), bins - 1)] += n
    return [(f"{low * ratio**i * 1000:.3g}", float(c)) for i, c in enumerate(counts)]


_LIMIT = re.compile(r"(?:<=|<)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)")


def _latency_limits(result: RunResult) -> dict[str, float]:
    """Upper limits of ``http_req_duration`` thresholds, drawn across the latency chart."""
    out = {}
    for t in result.thresholds:
        match = _LIMIT.search(t.expression)
        if t.metric == "http_req_duration" and match:
            out[t.expression] = float(match.group(1))
    return out


def _error_count(kind: str) -> Callable[[IntervalStats], float]:
    return lambda iv: iv.errors.get(kind, 0)


Points = list[tuple[float, float]]


def _points(series: Sequence[IntervalStats], value: Callable[[IntervalStats], float]) -> Points:
    """One point per interval, at its end (an interval's figures are known when it ends)."""
    return [(iv.end, value(iv)) for iv in series]


def _pct(series: Sequence[IntervalStats], metric: str, q: float) -> Points:
    return _points(
        series, lambda iv: iv.trend(metric).quantile(q) * 1000 if iv.requests else math.nan
    )


def _rate(series: Sequence[IntervalStats], count: Callable[[IntervalStats], float]) -> Points:
    return _points(series, lambda iv: count(iv) / iv.width if iv.width > 0 else 0.0)


def _charts(result: RunResult) -> list[str]:
    """Latency percentiles, throughput, VUs and errors over time, and the distribution."""
    series, x = result.series, "seconds since start"
    latency = {
        f"p{round(q * 100)}": _pct(series, "http_req_duration", q) for q in (0.5, 0.95, 0.99)
    }
    latency["service p95"] = _pct(series, "http_req_service", 0.95)
    throughput = {"requests/s": _points(series, lambda iv: iv.rps),
                  "failed/s": _rate(series, lambda iv: iv.failed),
                  "dropped iterations/s": _rate(series, lambda iv: iv.dropped)}  # fmt: skip
    vus = {"active VUs": _points(series, lambda iv: iv.vus),
           "allocated VUs": _points(series, lambda iv: iv.vus_max)}  # fmt: skip
    kinds = sorted({k for iv in series for k in iv.errors})
    errors = {k: _rate(series, _error_count(k)) for k in kinds}
    hist = histogram_bins(result.totals.trend("http_req_duration"))
    return [
        line_chart(latency, title="Latency over time (from the intended send time)", x_label=x,
                   y_label="ms", hlines=_latency_limits(result)),
        line_chart(throughput, title="Throughput", x_label=x, y_label="per second"),
        line_chart(vus, title="Virtual users", x_label=x, y_label="VUs"),
        line_chart(errors, title="Errors by kind", x_label=x, y_label="errors per second"),
        bar_chart(hist, title="Latency distribution (http_req_duration)", x_label="ms",
                  y_label="requests"),
    ]  # fmt: skip


def _facts(result: RunResult) -> list[tuple[str, object]]:
    meta, totals = result.meta, result.totals
    started = meta.get("started_at")
    when = (
        datetime.fromtimestamp(float(started), UTC).isoformat(timespec="seconds")
        if started
        else "-"
    )
    facts: list[tuple[str, object]] = [
        ("target", meta.get("target", "-")),
        ("started (UTC)", when),
        ("duration", f"{totals.elapsed:.1f} s"),
        ("segment", meta.get("segment", "1/1")),
        ("requests", totals.requests),
        ("requests/s", round(totals.rps, 2)),
        ("failed", f"{totals.failed_rate:.2%}"),
        ("VUs max", totals.vus_max),
        ("thresholds", ("passed" if result.passed else "FAILED") if result.thresholds else "none"),
    ]
    if meta.get("stopped"):
        facts.append(("stopped early", meta["stopped"]))
    return facts


def html_report(result: RunResult) -> str:
    """The whole report as one HTML document: facts, thresholds, charts, tables."""
    meta, totals = result.meta, result.totals
    parts = ["<h2>Run</h2>", html_table(["", ""], _facts(result))]
    if result.thresholds:
        parts += [
            "<h2>Thresholds</h2>",
            html_table(
                ["", "metric", "expression", "observed", "worst window"], _threshold_rows(result)
            ),
        ]
    parts += ["<h2>Charts</h2>", *_charts(result)]
    note = coordinated_omission(totals)["note"]
    parts += ["<h2>Metrics</h2>", f'<p class="note">{escape(note)}</p>', _metrics_table(totals)]
    if totals.errors or totals.statuses:
        rows: list[tuple[object, ...]] = sorted(totals.errors.items())
        parts += [
            "<h2>Errors and status codes</h2>",
            html_table(["error kind", "count"], rows),
            html_table(["status", "count"], sorted(totals.statuses.items())),
        ]
    if totals.names:
        rows = [
            (n, r, f"{f:.2%}", *(s[c] for c in ("med", "p(95)", "p(99)", "max")))
            for n, r, f, s in _name_rows(totals)
        ]
        parts += [
            "<h2>Per request name</h2>",
            html_table(
                ["name", "requests", "failed", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows
            ),
        ]
    notes = _notes(meta)
    if notes:
        parts += ["<h2>Notes</h2>", "".join(f'<p class="note">{escape(n)}</p>' for n in notes)]
    return html_page(f"Load test: {meta.get('target', '')}", "\n".join(parts))


def _metrics_table(totals: Totals) -> str:
    metrics = _metrics(totals)
    rows: list[list[object]] = [
        [m, *(metrics[m][c] for c in _TREND_COLUMNS), int(metrics[m]["count"])]
        for m in TRENDS
        if metrics[m]["count"]
    ]
    for m in ("http_reqs", "iterations", "dropped_iterations", "data_received", "data_sent"):
        rows.append([m, *[""] * 7, f"{int(metrics[m]['count']):,} ({metrics[m]['rate']:.4g}/s)"])
    rows.append(["http_req_failed", *[""] * 7, f"{totals.failed_rate:.2%}"])
    return html_table(["metric", *(f"{c} ms" for c in _TREND_COLUMNS), "count / rate"], rows)


def write_html(path: str | Path, result: RunResult) -> None:
    """Write the self-contained HTML report (see :func:`html_report`)."""
    Path(path).write_text(html_report(result), encoding="utf-8")
