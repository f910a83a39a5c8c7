"""What a run tells its reader: the end-of-run summary, JSON, a JSONL time series, HTML.

The text summary follows k6's end-of-test summary (trends with avg/min/med/max/p90/p95/p99,
counters with rates, thresholds with ✓/✗) as a rich table, and adds what k6 leaves out: the
coordinated-omission note (latency from the intended send time against service time) and
errors by kind. The HTML report is one self-contained file (inline SVG from
:mod:`scalewise.charts`, no scripts), so it can be attached to a ticket or a CI run.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final

from rich import box
from rich.console import Console
from rich.table import Table

from scalewise.loadtest.results import TRENDS, IntervalStats, RunResult, Totals
from scalewise.loadtest.thresholds import METRICS
from scalewise.metrics.histogram import Histogram

if TYPE_CHECKING:  # explicit re-exports for type checkers; at run time see __getattr__
    from scalewise.loadtest._html import histogram_bins as histogram_bins  # noqa: PLC0414
    from scalewise.loadtest._html import html_report as html_report  # noqa: PLC0414
    from scalewise.loadtest._html import write_html as write_html  # noqa: PLC0414

QUANTILES: Final = (0.5, 0.9, 0.95, 0.99)
_TREND_COLUMNS: Final = ("avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")
#: Names served by :mod:`._html`, which imports this module: loaded on first access.
_LAZY: Final = frozenset({"histogram_bins", "html_report", "write_html"})


def __getattr__(name: str) -> Any:
    """Re-export the HTML report without an import cycle (``report.html_report`` keeps
    working whichever of the two modules is imported first)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("scalewise.loadtest._html"), name)
    globals()[name] = value
    return value


# -- numbers ---------------------------------------------------------------------------


def trend_stats(hist: Histogram) -> dict[str, float]:
    """k6's trend columns in milliseconds, plus ``count`` (all 0 for an empty trend)."""
    if not hist.count:
        return {**dict.fromkeys(_TREND_COLUMNS, 0.0), "count": 0}
    med, p90, p95, p99 = hist.quantiles(QUANTILES)
    values = (hist.mean, hist.min, med, hist.max, p90, p95, p99)
    out: dict[str, float] = {
        k: round(v * 1000, 4) for k, v in zip(_TREND_COLUMNS, values, strict=True)
    }
    out["count"] = hist.count
    return out


def _per_second(count: float, seconds: float) -> float:
    return round(count / seconds, 4) if seconds > 0 else 0.0


def _metrics(totals: Totals) -> dict[str, dict[str, float]]:
    t = totals.elapsed
    out: dict[str, dict[str, float]] = {m: trend_stats(totals.trend(m)) for m in TRENDS}
    out["http_reqs"] = {"count": totals.requests, "rate": _per_second(totals.requests, t)}
    out["http_req_failed"] = {
        "rate": round(totals.failed_rate, 6),
        "passes": totals.failed,
        "fails": totals.requests - totals.failed,
    }
    checked = totals.checks_passed + totals.checks_failed
    out["checks"] = {
        "rate": round(totals.checks_passed / checked, 6) if checked else 0.0,
        "passes": totals.checks_passed,
        "fails": totals.checks_failed,
    }
    for name, count in (
        ("iterations", totals.iterations),
        ("dropped_iterations", totals.dropped),
        ("data_received", totals.received),
        ("data_sent", totals.sent),
    ):
        out[name] = {"count": count, "rate": _per_second(count, t)}
    out["vus"] = {"value": totals.vus}
    out["vus_max"] = {"value": totals.vus_max}
    return out


def coordinated_omission(totals: Totals) -> dict[str, Any]:
    """Latency from the intended send time against service time, at p99, and a sentence."""
    duration, service = totals.trend("http_req_duration"), totals.trend("http_req_service")
    lag = totals.trend("send_lag")
    d99, s99 = duration.quantile(0.99) * 1000, service.quantile(0.99) * 1000
    out: dict[str, Any] = {
        "duration_p99_ms": round(d99, 3),
        "service_p99_ms": round(s99, 3),
        "send_lag_max_ms": round(lag.max * 1000, 3),
    }
    if not duration.count:
        out["note"] = "No request completed."
    elif not lag.count or lag.max <= 0.0:
        out["note"] = (
            "Closed model: each request was sent when the previous one finished, "
            "so latency is service time (http_req_duration = http_req_service)."
        )
    elif d99 > s99 * 1.1 and d99 - s99 > 1.0:
        out["note"] = (
            f"p99 from the intended send time is {d99:.1f} ms but service time p99 is "
            f"{s99:.1f} ms: requests queued up to {lag.max * 1000:.1f} ms before they could be "
            "sent. A tool that times only from the actual send (coordinated omission) would "
            f"report about {s99:.1f} ms."
        )
    else:
        out["note"] = (
            f"p99 from the intended send time ({d99:.1f} ms) is close to service time "
            f"p99 ({s99:.1f} ms): requests were sent on schedule."
        )
    return out


def _name_rows(totals: Totals, limit: int = 50) -> list[tuple[str, int, float, dict[str, float]]]:
    names = sorted(totals.names.items(), key=lambda kv: -kv[1].requests)[:limit]
    return [
        (n, s.requests, s.failed / s.requests if s.requests else 0.0, trend_stats(s.duration))
        for n, s in names
    ]


def summary_dict(result: RunResult) -> dict[str, Any]:
    """The ``--json`` summary: k6-style metrics (trends in ms), thresholds, errors, names."""
    totals = result.totals
    meta = {k: v for k, v in result.meta.items() if k != "thresholds"}
    return {
        "passed": result.passed,
        "meta": meta,
        "metrics": _metrics(totals),
        "thresholds": [t.to_dict() for t in result.thresholds],
        "errors": dict(sorted(totals.errors.items())),
        "statuses": {str(k): v for k, v in sorted(totals.statuses.items())},
        "names": {
            n: {"requests": r, "failed_rate": round(f, 6), **s} for n, r, f, s in _name_rows(totals)
        },
        "coordinated_omission": coordinated_omission(totals),
    }


def write_result(path: str | Path, result: RunResult) -> None:
    """The full result (histograms included) as JSON, for ``scalewise loadtest merge``."""
    Path(path).write_text(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")


# -- JSONL -----------------------------------------------------------------------------


def interval_line(iv: IntervalStats, started_at: float | None = None) -> dict[str, Any]:
    """One JSONL record: :meth:`IntervalStats.to_dict` (mergeable) plus readable figures."""
    out = iv.to_dict()
    duration, service = iv.trend("http_req_duration"), iv.trend("http_req_service")
    p50, p95, p99 = duration.quantiles((0.5, 0.95, 0.99))
    out.update(
        rps=round(iv.rps, 3),
        p50_ms=round(p50 * 1000, 3),
        p95_ms=round(p95 * 1000, 3),
        p99_ms=round(p99 * 1000, 3),
        service_p95_ms=round(service.quantile(0.95) * 1000, 3),
    )
    if started_at is not None:
        out["time"] = datetime.fromtimestamp(started_at + iv.start, UTC).isoformat()
    return out


class JsonlWriter:
    """Appends one line per interval and flushes it, so ``tail -f`` and a crash both see
    every finished interval."""

    def __init__(self, path: str | Path, *, started_at: float | None = None) -> None:
        self.path = Path(path)
        self.started_at = started_at
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, iv: IntervalStats) -> None:
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write(
            json.dumps(interval_line(iv, self.started_at), separators=(",", ":")) + "\n"
        )
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_jsonl(
    path: str | Path, intervals: Iterable[IntervalStats], *, started_at: float | None = None
) -> None:
    """Append every interval as one JSON line (see :class:`JsonlWriter` for streaming)."""
    with JsonlWriter(path, started_at=started_at) as writer:
        for iv in intervals:
            writer.write(iv)


def read_jsonl(path: str | Path) -> list[IntervalStats]:
    """Intervals back from a JSONL file; a torn last line (a killed run) is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(IntervalStats.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return out


# -- text summary ----------------------------------------------------------------------


def format_ms(ms: float) -> str:
    """k6-style adaptive duration, 3 significant digits: ``850µs``, ``66.6ms``, ``1.25s``."""
    if ms >= 1000:
        return f"{ms / 1000:.3g}s"
    if ms >= 1:
        return f"{ms:.3g}ms"
    return f"{ms * 1000:.3g}µs" if ms > 0 else "0"


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _observed(metric: str, value: float) -> str:
    kind = METRICS.get(metric.split("{", 1)[0], "")
    if not math.isfinite(value):
        return "-"
    return (
        format_ms(value)
        if kind == "trend"
        else f"{value:.2%}"
        if kind == "rate"
        else f"{value:.6g}"
    )


def _threshold_rows(result: RunResult) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for t in result.thresholds:
        span = t.worst_window
        window = "" if span is None else f"{span[0]:.0f}s–{span[1]:.0f}s"
        rows.append(
            ("✓" if t.ok else "✗", t.metric, t.expression, _observed(t.metric, t.observed), window)
        )
    return rows


def _table(*columns: str, title: str | None = None) -> Table:
    return Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left")


def trend_table(totals: Totals) -> Table:
    """Trends as k6 prints them (avg, min, med, max, p90, p95, p99) in adaptive units."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1))
    table.add_column("metric", no_wrap=True, min_width=19)
    for column in _TREND_COLUMNS:
        table.add_column(column, justify="right", no_wrap=True)
    for metric, stats in _metrics(totals).items():
        if metric in TRENDS and stats["count"]:
            table.add_row(metric, *(format_ms(stats[c]) for c in _TREND_COLUMNS))
    return table


def counter_table(totals: Totals) -> Table:
    """Counters with their per-second rate, the failure and check rates, and VUs."""
    metrics = _metrics(totals)
    table = _table("metric", "total", "rate")
    for m in ("http_reqs", "iterations", "dropped_iterations"):
        table.add_row(m, f"{int(metrics[m]['count']):,}", f"{metrics[m]['rate']:.1f}/s")
    for m in ("data_received", "data_sent"):
        table.add_row(m, format_bytes(metrics[m]["count"]), f"{format_bytes(metrics[m]['rate'])}/s")
    table.add_row("http_req_failed", f"{totals.failed:,}", f"{totals.failed_rate:.2%}")
    if totals.checks:
        checks = metrics["checks"]
        table.add_row("checks", f"{int(checks['passes']):,} passed", f"{checks['rate']:.2%}")
    table.add_row("vus / vus_max", f"{totals.vus} / {totals.vus_max}", "")
    return table


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """Print the end-of-run summary: run facts, thresholds, metrics, CO note, errors, names."""
    console = console or Console()
    meta, totals = result.meta, result.totals
    target, segment = meta.get("target", "-"), meta.get("segment", "1/1")
    took = f"{totals.elapsed:.1f}s"
    console.print(f"[bold]target[/] {target}  [bold]duration[/] {took}  [bold]segment[/] {segment}")
    if meta.get("stopped"):
        console.print(f"[yellow]stopped early:[/] {meta['stopped']}")
    console.print(trend_table(totals), counter_table(totals))
    console.print(f"[dim]{coordinated_omission(totals)['note']}[/]")
    if totals.errors:
        errors = _table("error", "count", "share", title="errors by kind")
        for kind, n in sorted(totals.errors.items(), key=lambda kv: -kv[1]):
            errors.add_row(kind, f"{n:,}", f"{n / max(totals.requests, 1):.2%}")
        console.print(errors)
    if len(totals.names) > 1:
        names = _table(
            "name", "reqs", "failed", "p50", "p95", "p99", "max", title="per request name"
        )
        for name, n, failed, s in _name_rows(totals, limit=20):
            cells = (format_ms(s[c]) for c in ("med", "p(95)", "p(99)", "max"))
            names.add_row(name, f"{n:,}", f"{failed:.2%}", *cells)
        console.print(names)
    for line in _notes(meta):
        console.print(f"[yellow]{line}[/]")
    if result.thresholds:
        table = _table(
            "", "threshold", "expression", "observed", "worst window", title="thresholds"
        )
        for row in _threshold_rows(result):
            table.add_row(*row, style="green" if row[0] == "✓" else "bold red")
        verdict = "[bold green]passed[/]" if result.passed else "[bold red]FAILED[/]"
        console.print(table, f"thresholds {verdict}")


def _notes(meta: Mapping[str, Any]) -> list[str]:
    """Generator warnings and findings (stress breaking point, soak drift) as lines."""
    out = []
    generator = meta.get("generator")
    if isinstance(generator, Mapping) and generator.get("warning"):
        out.append(str(generator["warning"]))
    findings = meta.get("findings")
    if isinstance(findings, Mapping):
        for key, value in _flatten(findings):
            out.append(f"{key}: {value}")
    return out


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out
