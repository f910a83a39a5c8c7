"""Load-test results: a hot-path recorder, per-interval series, and a mergeable run result.

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

import math
import operator
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import compress
from typing import Any, Final

from scalewise.errors import LoadTestError
from scalewise.metrics.histogram import (
    _INV_LOG_GAMMA,
    _OFFSET,
    _OVERFLOW,
    MAX_VALUE,
    MIN_VALUE,
    Histogram,
)

TRENDS: Final = ("http_req_duration", "http_req_service", "send_lag", "http_req_connecting",
                 "http_req_waiting", "iteration_duration")  # fmt: skip
ERROR_KINDS: Final = frozenset(
    {"timeout", "refused", "reset", "tls", "dns", "protocol", "closed", "other", "4xx", "5xx"}
)
OTHER_NAME: Final = "__other__"
FORMAT_VERSION: Final = 1
_BATCH: Final = 2048
_EPS: Final = 1e-9
_log = math.log

Sample = tuple[str, int, "str | None", bool, float, float, float, float, float, int, int]


def _record_all(hist: Histogram, values: list[float]) -> None:
    """``hist.record(v)`` for each value, inlined for the batch fold: same arithmetic and
    layout as ``Histogram.record``, with sum/min/max done by C builtins over the batch.
    Negative or NaN values (a clock step) count as 0 rather than stop the run."""
    if not values:
        return
    low, total = min(values), sum(values)
    if not low >= 0.0 or math.isnan(total):
        values = [v if v >= 0.0 else 0.0 for v in values]
        low, total = min(values), sum(values)
    counts, log, scale, offset = hist._counts, _log, _INV_LOG_GAMMA, _OFFSET
    least, most, high = MIN_VALUE, MAX_VALUE, max(values)
    if high < least:  # all zero: connect time on kept-alive connections, closed-model lag
        counts[0] += len(values)
    else:
        for v in values:
            if v >= least:
                counts[int(log(v) * scale + offset) if v <= most else _OVERFLOW] += 1
            else:
                counts[0] += 1
    hist.count += len(values)
    hist.sum += total
    if high > hist.max:
        hist.max = high
    if low < hist.min:
        hist.min = low


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


class _Open:
    """The interval being recorded into. Request durations are kept per name; the
    interval's ``http_req_duration`` is their merge (one histogram record per request)."""

    __slots__ = ("checks", "dropped", "iterations", "names", "start", "trends", "vus", "vus_max")

    def __init__(self, start: float, vus: int, vus_max: int) -> None:
        self.start = start
        self.trends = {t: Histogram() for t in TRENDS if t != "http_req_duration"}
        self.names: dict[str, Histogram] = {}
        self.iterations = self.dropped = 0
        self.checks = [0, 0]
        self.vus, self.vus_max = vus, vus_max


class ResultRecorder:
    """Collects a run's measurements in constant memory with a ~1 µs-per-request hot path.

    ``record`` appends one tuple to a buffer; every 2,048 requests, and on ``roll`` and on
    reads, the buffer is transposed (``zip``) and folded into histograms and counters with
    C-level ``map``/``sum``/``Counter`` and one tight loop per histogram. Timestamps are
    ``time.perf_counter()`` seconds; ``origin`` is the run's start on that clock.

    Example:
        >>> rec = ResultRecorder(origin=0.0)
        >>> rec.record("home", 200, None, False, 0.1, 0.1, 0.1, 0.11, 0.12, 512, 80)
        >>> iv = rec.roll(1.0)
        >>> iv.requests, round(iv.trend("http_req_duration").max, 3)
        (1, 0.02)
    """

    def __init__(
        self, *, origin: float, interval: float = 1.0, max_names: int = 100, max_points: int = 3600
    ) -> None:
        if not interval > 0 or max_points < 2 or max_names < 1:
            raise ValueError("interval must be > 0, max_points >= 2 and max_names >= 1")
        self.origin, self.interval = origin, interval
        self.max_names, self.max_points = max_names, max_points
        self._width = interval  # width of stored intervals; doubles on compaction
        self._buf: list[Sample] = []
        self._closed = Totals()
        self._series: list[IntervalStats] = []
        self._vus = self._vus_max = 0
        self._open = _Open(0.0, 0, 0)
        self._statuses: Counter[int] = Counter()
        self._errors: Counter[str | None] = Counter()
        self._counts = [0, 0, 0]  # failed, received, sent in the open interval

    # -- hot path ------------------------------------------------------------------------

    def record(
        self, name: str, status: int, error: str | None, failed: bool, intended: float,
        started: float, connected: float, first_byte: float, ended: float, received: int,
        sent: int,
    ) -> None:  # fmt: skip
        """One finished request. ``error`` is a transport error kind (see :data:`ERROR_KINDS`;
        others count as ``"other"``) or ``None``; HTTP 4xx/5xx count as ``"4xx"``/``"5xx"``."""
        buf = self._buf
        buf.append((name, status, error, failed, intended, started, connected, first_byte,
                    ended, received, sent))  # fmt: skip
        if len(buf) >= _BATCH:
            self._fold()

    def record_check(self, name: str, ok: bool) -> None:
        """One check result (``checks`` rate; per-check counts capped at ``max_names``)."""
        checks = self._closed.checks
        cell = checks.get(name)
        if cell is None:
            cell = checks.setdefault(name if len(checks) < self.max_names else OTHER_NAME, [0, 0])
        cell[0 if ok else 1] += 1
        self._open.checks[0 if ok else 1] += 1

    def record_iteration(self, scenario: str, duration: float) -> None:
        """One finished iteration of ``scenario`` (``iteration_duration``, ``iterations``)."""
        duration = max(duration, 0.0)
        self._open.trends["iteration_duration"].record(duration)
        self._open.iterations += 1
        scenarios = self._closed.scenarios
        if scenario not in scenarios and len(scenarios) >= self.max_names:
            scenario = OTHER_NAME
        stats = scenarios.setdefault(scenario, NameStats())
        stats.requests += 1
        stats.duration.record(duration)

    def record_dropped(self, n: int = 1) -> None:
        """Iterations an arrival-rate executor could not start (k6 ``dropped_iterations``)."""
        self._open.dropped += n

    def set_vus(self, active: int, allocated: int) -> None:
        self._vus, self._vus_max = active, allocated
        op = self._open
        op.vus, op.vus_max = max(op.vus, active), max(op.vus_max, allocated)

    # -- folding -------------------------------------------------------------------------

    def _name_hist(self, name: str) -> Histogram:
        """The open interval's duration histogram for ``name`` (past the cap, ``__other__``)."""
        names = self._closed.names
        if name not in names:
            name = name if len(names) < self.max_names else OTHER_NAME
            names.setdefault(name, NameStats())
        hist = self._open.names.get(name)
        if hist is None:
            hist = self._open.names[name] = Histogram()
        return hist

    def _fold(self) -> None:
        """Fold the buffered requests into the open interval."""
        buf = self._buf
        if not buf:
            return
        self._buf = []
        names, statuses, errors, failed, intended, started, connected, first, ended, rx, tx = zip(
            *buf, strict=True
        )
        durations, sub, trends = (
            list(map(operator.sub, ended, intended)),
            operator.sub,
            self._open.trends,
        )
        if names.count(names[0]) == len(names):
            _record_all(self._name_hist(names[0]), durations)
        else:
            groups: defaultdict[str, list[float]] = defaultdict(list)
            for name, duration in zip(names, durations, strict=True):
                groups[name].append(duration)
            for name, values in groups.items():
                _record_all(self._name_hist(name), values)
        _record_all(trends["http_req_service"], list(map(sub, ended, started)))
        _record_all(trends["send_lag"], list(map(sub, started, intended)))
        _record_all(trends["http_req_connecting"], list(map(sub, connected, started)))
        _record_all(trends["http_req_waiting"], list(map(sub, first, connected)))
        counts = self._counts
        counts[0] += sum(failed)
        counts[1] += sum(rx)
        counts[2] += sum(tx)
        self._statuses.update(statuses)
        self._errors.update(errors)
        if any(failed):
            for name, n in Counter(compress(names, failed)).items():
                table = self._closed.names
                table[name if name in table else OTHER_NAME].failed += n

    def _errors_now(self) -> dict[str, int]:
        """Errors by kind in the open interval, HTTP errors classed from the status counts."""
        out: dict[str, int] = {}
        for kind, n in self._errors.items():
            if kind is not None:
                known = kind if kind in ERROR_KINDS else "other"
                out[known] = out.get(known, 0) + n
        for status, n in self._statuses.items():
            if status >= 400:
                kind = "5xx" if status >= 500 else "4xx"
                out[kind] = out.get(kind, 0) + n
        return out

    def _snapshot(self, width: float) -> IntervalStats:
        """The open interval as IntervalStats (call after ``_fold``), without closing it."""
        op, (failed, rx, tx) = self._open, self._counts
        trends: dict[str, Histogram] = {k: h.freeze() for k, h in op.trends.items() if h.count}
        duration = Histogram()
        for hist in op.names.values():
            duration.merge(hist)
        if duration.count:
            trends["http_req_duration"] = duration.freeze()
        return IntervalStats(
            op.start, width, duration.count, failed, rx, tx, op.iterations, op.dropped,
            op.checks[0], op.checks[1], op.vus, op.vus_max, self._errors_now(), trends,
        )  # fmt: skip

    def _close(self, width: float, next_start: float) -> IntervalStats:
        self._fold()
        closed = self._snapshot(width)
        self._add_open(self._closed, closed)
        self._closed.vus_max = max(self._closed.vus_max, closed.vus_max)
        self._statuses.clear()
        self._errors.clear()
        self._counts = [0, 0, 0]
        self._open = _Open(next_start, self._vus, self._vus_max)
        self._store(closed)
        return closed

    def _add_open(self, totals: Totals, snapshot: IntervalStats) -> None:
        """Add the open interval (as ``snapshot``), its per-name durations and statuses."""
        totals.add_interval(snapshot)
        for name, hist in self._open.names.items():
            stats = totals.names[name]
            stats.requests += hist.count
            stats.duration.merge(hist)
        _add_counts(totals.statuses, self._statuses)

    def _store(self, iv: IntervalStats) -> None:
        """Append to the series, coarsening it pairwise when it would exceed ``max_points``."""
        series = self._series
        if series and series[-1].width < self._width - _EPS:
            series[-1] = _compact(series[-1].combine(iv, concurrent=False))
        else:
            series.append(_compact(iv))  # the caller keeps the fast, uncompacted copy
        if len(series) > self.max_points:
            pairs = [series[i : i + 2] for i in range(0, len(series), 2)]
            series[:] = [
                _compact(p[0].combine(p[1], concurrent=False)) if len(p) == 2 else p[0]
                for p in pairs
            ]
            self._width *= 2

    # -- reading -------------------------------------------------------------------------

    def roll(self, now: float) -> IntervalStats | None:
        """Close the open interval if ``now`` is past its end and return it, else ``None``.

        Requests count in the interval open when they are folded, so a late ``roll`` moves
        at most its lateness into the closing interval. Intervals that passed with no call
        (a stalled loop) are stored empty, so the series stays contiguous and aligned to
        multiples of ``interval`` after ``origin``.
        """
        elapsed = now - self.origin
        end = self._open.start + self.interval
        if elapsed < end - _EPS:
            return None
        current = math.floor(elapsed / self.interval + _EPS) * self.interval
        closed = self._close(self.interval, end)
        while self._open.start < current - _EPS:
            self._close(self.interval, self._open.start + self.interval)
        return closed

    @property
    def series(self) -> list[IntervalStats]:
        """The closed intervals kept so far (a live list: do not modify)."""
        return self._series

    def totals(self, now: float | None = None) -> Totals:
        """Totals so far, including the open interval (a copy; costs a few hundred µs)."""
        self._fold()
        live = self._closed.copy()
        self._add_open(live, self._snapshot(self.interval))
        live.vus, live.vus_max = self._vus, max(self._vus_max, self._closed.vus_max)
        live.elapsed = max(0.0, now - self.origin) if now is not None else self._open.start
        return live

    def snapshot(self, now: float, meta: Mapping[str, Any] | None = None) -> RunResult:
        """A live :class:`RunResult` (closed intervals only in its series), for abort checks."""
        return RunResult(dict(meta or {}), self.totals(now), list(self._series), self._width)

    def result(self, meta: Mapping[str, Any], *, now: float | None = None) -> RunResult:
        """Finish: close the partial last interval (its width is the time it actually ran).

        ``now`` defaults to ``time.perf_counter()``; ``meta["duration"]`` to the elapsed time.
        """
        elapsed = max(0.0, (time.perf_counter() if now is None else now) - self.origin)
        start = self._open.start
        if elapsed > start + _EPS or self._buf or self._open.names:
            self._close(max(elapsed - start, 0.0), start + self.interval)
        totals = self._closed.copy()
        totals.elapsed, totals.vus = elapsed, self._vus
        return RunResult({"duration": elapsed, **meta}, totals, list(self._series), self._width)
