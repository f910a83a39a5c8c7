"""The hot-path recorder behind :class:`~scalewise.loadtest.results.ResultRecorder`.

Kept apart from the data model in :mod:`scalewise.loadtest.results` (which re-exports
``ResultRecorder``) because its concern is speed, not shape: requests are buffered as tuples and
folded in batches with C builtins and :meth:`Histogram.record_all`.
The model module loads this one lazily, so importing either first works.
"""

from __future__ import annotations

import math
import operator
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from itertools import compress
from typing import Any, Final

from scalewise.loadtest.results import (
    _EPS,
    ERROR_KINDS,
    OTHER_NAME,
    TRENDS,
    IntervalStats,
    NameStats,
    RunResult,
    Totals,
    _add_counts,
    _compact,
)
from scalewise.metrics.histogram import Histogram

_BATCH: Final = 2048

Sample = tuple[str, int, "str | None", bool, float, float, float, float, float, int, int]


def _record_all(hist: Histogram, values: list[float]) -> None:
    """``hist.record_all(values)``, with negative or NaN values (a clock step) counted as 0
    rather than stopping the run."""
    if values and (not min(values) >= 0.0 or math.isnan(sum(values))):
        values = [v if v >= 0.0 else 0.0 for v in values]
    hist.record_all(values)


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
