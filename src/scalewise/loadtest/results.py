"""Load-test results: per-interval series and a mergeable run result.

The hot-path recorder that fills them, :class:`ResultRecorder`, lives in
:mod:`scalewise.loadtest._recorder` and is re-exported here.

Metric names follow k6 (``http_req_duration``, ``http_req_waiting``, ``http_req_connecting``,
``http_req_failed``, ``http_reqs``, ``iterations``, ``dropped_iterations``, ``data_received``,
``data_sent``, ``checks``, ``vus``, ``vus_max``), with two additions:

* ``http_req_duration`` is measured from the request's *intended* send time, so a stalled
  target cannot hide its stall by delaying the requests queued behind it (coordinated
  omission). In closed-model runs the runner passes ``intended == started``.
* ``http_req_service`` is the service time (``ended − started``) and ``send_lag`` the delay
  between intended and actual send (``started − intended``): the gap between the two
  durations is the queueing the generator or the target imposed.

Every trend is a :class:`~scalewise.metrics.histogram.Histogram` (1 % relative error, merges
exactly), so memory stays constant however long the run: the series keeps at most
``max_points`` intervals, and when it would hold more, adjacent intervals merge pairwise and
the width of the stored intervals doubles (a 1 s series of a 2-hour run ends as 2 s intervals).
Each stored interval holds six trimmed histograms (a few KB together: 3,600 intervals of
log-normal latencies measured 20-25 MB, flat from the first hour to the fourth).
``roll`` still returns every base-width interval, for live progress and the JSONL stream.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from scalewise.errors import LoadTestError
from scalewise.metrics.histogram import Histogram

if TYPE_CHECKING:  # explicit re-exports for type checkers; at run time see __getattr__
    from scalewise.loadtest._recorder import ResultRecorder as ResultRecorder  # noqa: PLC0414
    from scalewise.loadtest._recorder import _record_all as _record_all  # noqa: PLC0414

TRENDS: Final = ("http_req_duration", "http_req_service", "send_lag", "http_req_connecting",
                 "http_req_waiting", "iteration_duration")  # fmt: skip
ERROR_KINDS: Final = frozenset(
    {"timeout", "refused", "reset", "tls", "dns", "protocol", "closed", "other", "4xx", "5xx"}
)
OTHER_NAME: Final = "__other__"
FORMAT_VERSION: Final = 1
_EPS: Final = 1e-9
#: Names served by :mod:`._recorder`, which imports this module: loaded on first access.
_LAZY: Final = frozenset({"ResultRecorder", "_record_all"})


def __getattr__(name: str) -> Any:
    """Re-export the recorder without an import cycle (``from .results import ResultRecorder``
    keeps working whichever of the two modules is imported first)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("scalewise.loadtest._recorder"), name)
    globals()[name] = value
    return value


class CompactTrends(Mapping[str, Histogram]):
    """An interval's trend histograms kept packed (:meth:`Histogram.pack`), unpacked on access.

    A stored interval of a 1 000 req/s run holds six histograms of a few hundred buckets each:
    about 11 KB as lists, under 2 KB packed. The series of a long run keeps thousands of
    intervals, so this is what keeps a soak's memory flat; reads (windowed thresholds, reports,
    merges) unpack a histogram in about 10 µs.
    """

    __slots__ = ("_raw",)

    def __init__(self, trends: Mapping[str, Histogram]) -> None:
        self._raw = {k: h.pack() for k, h in trends.items()}

    def __getitem__(self, key: str) -> Histogram:
        return Histogram.unpack(self._raw[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _compact(iv: IntervalStats) -> IntervalStats:
    return replace(iv, trends=CompactTrends(iv.trends))


def _merged(a: Histogram, b: Histogram) -> Histogram:
    return Histogram().merge(a).merge(b).freeze()


def _add_counts(into: dict[Any, int], other: Mapping[Any, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


@dataclass(slots=True)
class NameStats:
    """Totals for one request name (the ``name`` tag): the unit of the per-name table."""

    requests: int = 0
    failed: int = 0
    duration: Histogram = field(default_factory=Histogram)

    def merge(self, other: NameStats) -> NameStats:
        self.requests += other.requests
        self.failed += other.failed
        self.duration.merge(other.duration)
        return self

    def to_dict(self) -> dict[str, Any]:
        duration = self.duration.to_text()
        return {"requests": self.requests, "failed": self.failed, "duration": duration}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NameStats:
        duration = Histogram.from_text(data["duration"])
        return cls(int(data["requests"]), int(data["failed"]), duration)


@dataclass(slots=True)
class IntervalStats:
    """Everything measured in ``[start, start + width)`` seconds after the run started.

    ``vus`` is the peak of active VUs in the interval, ``vus_max`` the peak allocated.
    Trend histograms are keyed by the names in :data:`TRENDS` and are read-only.
    """

    start: float
    width: float
    requests: int = 0
    failed: int = 0
    received: int = 0
    sent: int = 0
    iterations: int = 0
    dropped: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    vus: int = 0
    vus_max: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    trends: Mapping[str, Histogram] = field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.width

    @property
    def rps(self) -> float:
        return self.requests / self.width if self.width > 0 else 0.0

    def trend(self, metric: str) -> Histogram:
        hist = self.trends.get(metric)
        return hist if hist is not None else Histogram()

    def combine(self, other: IntervalStats, *, concurrent: bool) -> IntervalStats:
        """Merge two intervals: ``concurrent`` ones (other processes, same time) sum their
        VUs; adjacent ones (same process, next interval) keep the peak and add widths."""
        if concurrent:
            start, width = min(self.start, other.start), max(self.width, other.width)
            vus, vus_max = self.vus + other.vus, self.vus_max + other.vus_max
        else:
            start, width = self.start, self.width + other.width
            vus, vus_max = max(self.vus, other.vus), max(self.vus_max, other.vus_max)
        errors = dict(self.errors)
        _add_counts(errors, other.errors)
        keys = self.trends.keys() | other.trends.keys()
        trends = {k: _merged(self.trend(k), other.trend(k)) for k in sorted(keys)}
        return IntervalStats(
            start, width, self.requests + other.requests, self.failed + other.failed,
            self.received + other.received, self.sent + other.sent,
            self.iterations + other.iterations, self.dropped + other.dropped,
            self.checks_passed + other.checks_passed, self.checks_failed + other.checks_failed,
            vus, vus_max, errors, trends,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; histograms as text so intervals from several processes can be merged."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _INTERVAL_SCALARS}
        out["errors"] = dict(self.errors)
        out["trends"] = {k: h.to_text() for k, h in self.trends.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntervalStats:
        iv = cls(float(data["start"]), float(data["width"]))
        for key in _INTERVAL_SCALARS[2:]:
            setattr(iv, key, int(data[key]))
        iv.errors = {str(k): int(v) for k, v in data.get("errors", {}).items()}
        iv.trends = {k: Histogram.from_text(v).freeze() for k, v in data.get("trends", {}).items()}
        return iv


_INTERVAL_SCALARS: Final = (
    "start", "width", "requests", "failed", "received", "sent", "iterations", "dropped",
    "checks_passed", "checks_failed", "vus", "vus_max",
)  # fmt: skip


@dataclass(slots=True)
class Totals:
    """Whole-run (or live, so-far) figures; ``elapsed`` is seconds since the run started."""

    elapsed: float = 0.0
    requests: int = 0
    failed: int = 0
    received: int = 0
    sent: int = 0
    iterations: int = 0
    dropped: int = 0
    vus: int = 0
    vus_max: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    checks: dict[str, list[int]] = field(default_factory=dict)  # name → [passed, failed]
    trends: dict[str, Histogram] = field(default_factory=lambda: {t: Histogram() for t in TRENDS})
    names: dict[str, NameStats] = field(default_factory=dict)
    scenarios: dict[str, NameStats] = field(default_factory=dict)  # iterations per scenario

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def failed_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def checks_passed(self) -> int:
        return sum(p for p, _ in self.checks.values())

    @property
    def checks_failed(self) -> int:
        return sum(f for _, f in self.checks.values())

    def trend(self, metric: str) -> Histogram:
        hist = self.trends.get(metric)
        return hist if hist is not None else Histogram()

    def add_interval(self, iv: IntervalStats) -> None:
        """Fold a closed interval's counters and trends in (per-name data is kept apart)."""
        self.requests += iv.requests
        self.failed += iv.failed
        self.received += iv.received
        self.sent += iv.sent
        self.iterations += iv.iterations
        self.dropped += iv.dropped
        _add_counts(self.errors, iv.errors)
        for metric, hist in iv.trends.items():
            self.trends.setdefault(metric, Histogram()).merge(hist)

    def merge(self, other: Totals) -> Totals:
        """Add another process's totals (VUs add up; elapsed is the longer of the two)."""
        self.elapsed = max(self.elapsed, other.elapsed)
        for key in ("requests", "failed", "received", "sent", "iterations", "dropped"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.vus += other.vus
        self.vus_max += other.vus_max
        _add_counts(self.statuses, other.statuses)
        _add_counts(self.errors, other.errors)
        for name, (passed, failed) in other.checks.items():
            mine = self.checks.setdefault(name, [0, 0])
            mine[0], mine[1] = mine[0] + passed, mine[1] + failed
        for metric, hist in other.trends.items():
            self.trends.setdefault(metric, Histogram()).merge(hist)
        for table, theirs in ((self.names, other.names), (self.scenarios, other.scenarios)):
            for name, stats in theirs.items():
                table.setdefault(name, NameStats()).merge(stats)
        return self

    def copy(self) -> Totals:
        return Totals().merge(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _TOTAL_SCALARS}
        out["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        out["errors"] = dict(sorted(self.errors.items()))
        out["checks"] = {k: list(v) for k, v in self.checks.items()}
        out["trends"] = {k: h.to_text() for k, h in self.trends.items()}
        out["names"] = {k: s.to_dict() for k, s in self.names.items()}
        out["scenarios"] = {k: s.to_dict() for k, s in self.scenarios.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Totals:
        totals = cls(
            elapsed=float(data["elapsed"]),
            statuses={int(k): int(v) for k, v in data.get("statuses", {}).items()},
            errors={str(k): int(v) for k, v in data.get("errors", {}).items()},
            checks={str(k): [int(v[0]), int(v[1])] for k, v in data.get("checks", {}).items()},
            trends={k: Histogram.from_text(v) for k, v in data.get("trends", {}).items()},
            names={k: NameStats.from_dict(v) for k, v in data.get("names", {}).items()},
            scenarios={k: NameStats.from_dict(v) for k, v in data.get("scenarios", {}).items()},
        )
        for key in _TOTAL_SCALARS[1:]:
            setattr(totals, key, int(data[key]))
        return totals


_TOTAL_SCALARS: Final = (
    "elapsed", "requests", "failed", "received", "sent", "iterations", "dropped", "vus", "vus_max",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ThresholdOutcome:
    """One threshold's verdict. ``observed`` is in the expression's unit (ms for trends);
    for windowed thresholds it is the worst window's value and ``worst_window`` its
    ``(start, end)`` in seconds since the run started. ``abort`` is set when a failing
    ``abortOnFail`` threshold stopped (or should stop) the run."""

    metric: str
    expression: str
    ok: bool
    observed: float
    worst_window: tuple[float, float] | None = None
    abort: bool = False

    def to_dict(self) -> dict[str, Any]:
        window = list(self.worst_window) if self.worst_window is not None else None
        observed = self.observed if math.isfinite(self.observed) else None
        return {"metric": self.metric, "expression": self.expression, "ok": self.ok,
                "observed": observed, "worst_window": window, "abort": self.abort}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdOutcome:
        window = data.get("worst_window")
        observed = data.get("observed")
        return cls(
            str(data["metric"]), str(data["expression"]), bool(data["ok"]),
            math.nan if observed is None else float(observed),
            (float(window[0]), float(window[1])) if window else None, bool(data.get("abort")),
        )  # fmt: skip


@dataclass(slots=True)
class RunResult:
    """One run (or a merge of several): what reports, thresholds and ``merge`` work from.

    ``meta`` is free-form but these keys have meaning: ``target``, ``scenarios``,
    ``started_at`` (wall-clock epoch seconds, used to align merged series), ``duration``,
    ``segment`` (``"i/n"``). ``interval`` is the width of the stored series' intervals.
    """

    meta: dict[str, Any]
    totals: Totals
    series: list[IntervalStats]
    interval: float = 1.0
    thresholds: list[ThresholdOutcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(t.ok for t in self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "meta": self.meta,
            "interval": self.interval,
            "totals": self.totals.to_dict(),
            "series": [iv.to_dict() for iv in self.series],
            "thresholds": [t.to_dict() for t in self.thresholds],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict`; a foreign or damaged file raises :class:`LoadTestError`."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            raise LoadTestError(f"not a scalewise load-test result (format {FORMAT_VERSION})")
        try:
            return cls(
                meta=dict(data.get("meta", {})),
                totals=Totals.from_dict(data["totals"]),
                series=[IntervalStats.from_dict(iv) for iv in data.get("series", [])],
                interval=float(data.get("interval", 1.0)),
                thresholds=[ThresholdOutcome.from_dict(t) for t in data.get("thresholds", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LoadTestError(f"load-test result is damaged: {exc}") from exc


def merge(results: Sequence[RunResult]) -> RunResult:
    """Combine the results of segments or processes that ran at the same time.

    Counts add, histograms merge (exactly), VUs add. Series are aligned by wall-clock start
    (``meta["started_at"]``) onto slots of the widest interval among the inputs. Threshold
    outcomes are dropped: evaluate the thresholds again on the merged result.
    """
    if not results:
        raise LoadTestError("no results to merge")
    starts = [float(r.meta.get("started_at", 0.0)) for r in results]
    origin = min(starts)
    ends = [
        s + float(r.meta.get("duration", r.totals.elapsed))
        for s, r in zip(starts, results, strict=True)
    ]
    width = max(r.interval for r in results)
    slots: dict[int, IntervalStats] = {}
    for shift, result in zip(starts, results, strict=True):
        own: dict[int, IntervalStats] = {}
        for iv in result.series:
            key = math.floor((iv.start + shift - origin) / width + _EPS)
            placed = replace(iv, start=key * width)
            own[key] = own[key].combine(placed, concurrent=False) if key in own else placed
        for key, iv in own.items():
            iv.width = min(iv.width, width)
            slots[key] = slots[key].combine(iv, concurrent=True) if key in slots else iv
    totals = Totals()
    for result in results:
        totals.merge(result.totals)
    totals.elapsed = max(ends) - origin
    meta = dict(results[0].meta)
    meta.update(
        started_at=origin,
        duration=totals.elapsed,
        segment="merged",
        segments=[r.meta.get("segment") for r in results],
        processes=sum(int(r.meta.get("processes", 1)) for r in results),
    )
    return RunResult(meta, totals, [slots[k] for k in sorted(slots)], width)
