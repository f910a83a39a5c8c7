"""The metric catalog rules are written against, and its evaluation over interval snapshots.

A rule names a catalog metric (``latency_p95``, ``error_rate``, ``memory_mb``,
``gauge:queue_depth`` …) and a window; :func:`metric_value` is the reference definition of what
that means over :class:`~scalewise.metrics.windows.IntervalSnapshot` objects, and
:class:`SnapshotSource` answers the same question fast, for the daemon and ``replay``.

Missing data gives ``None``, never 0: no snapshot in the window, no request for a latency or
error metric, no reading of a gauge. The engine makes no decision on ``None`` (as the HPA).

Several workers' snapshots mix freely: snapshots with the same ``start`` are one slot. Counts add
up; a slot's peak concurrency, CPU %, RSS and memory % are the sum over its workers (they share
the instance), then averaged (peak: maximised) over slots; event-loop lag is the worst reading;
user gauges are the mean of all readings, because a queue's depth read by four workers is still
one queue.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import sys
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, groupby, islice
from operator import attrgetter
from types import MappingProxyType
from typing import Final, Protocol

from scalewise.errors import RuleError
from scalewise.metrics.histogram import BUCKETS, Histogram, bucket_value
from scalewise.metrics.windows import IntervalSnapshot, WindowStats, combine
from scalewise.units import format_duration

logger = logging.getLogger(__name__)

KINDS: Final = frozenset({"duration", "ratio", "rate", "count", "bytes", "percent", "megabytes"})
GAUGE_PREFIX: Final = "gauge:"
_GAUGE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MIB: Final = float(2**20)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One catalog entry. ``kind`` decides how thresholds are written and shown."""

    name: str
    kind: str
    unit: str
    description: str


METRICS: Final[Mapping[str, MetricSpec]] = MappingProxyType(
    {
        name: MetricSpec(name, kind, unit, description)
        for name, kind, unit, description in (
            ("latency_avg", "duration", "s", "mean response time"),
            ("latency_p50", "duration", "s", "median response time (1 % relative error)"),
            ("latency_p90", "duration", "s", "90th percentile response time"),
            ("latency_p95", "duration", "s", "95th percentile response time"),
            ("latency_p99", "duration", "s", "99th percentile response time"),
            ("latency_max", "duration", "s", "slowest response"),
            ("rps", "rate", "/s", "requests per second"),
            ("requests_per_day", "count", "", "requests in the window, scaled to 24 h"),
            ("error_rate", "ratio", "", "share of responses that were 5xx or exceptions"),
            ("concurrency_peak", "count", "", "most requests in flight at once"),
            ("concurrency_avg", "count", "", "mean requests in flight (Little's law)"),
            ("cpu_percent", "percent", "%", "CPU of all workers, % of one core"),
            ("memory_mb", "megabytes", "MB", "resident memory of all workers, MiB"),
            ("memory_percent", "percent", "%", "resident memory, % of the container limit"),
            ("event_loop_lag", "duration", "s", "worst event-loop lag"),
            ("busy_ratio", "ratio", "", "share of time workers had a request in flight"),
            ("queue_time_p95", "duration", "s", "95th percentile wait in the router"),
        )
    }
)
_FORMATS: Final[Mapping[str, Callable[[float], str]]] = {
    "duration": format_duration,
    "ratio": lambda v: f"{v * 100:.4g}%",
    "percent": lambda v: f"{v:.4g}%",
    "megabytes": lambda v: f"{v:.4g}MB",
    "bytes": lambda v: f"{v:.4g}B",
    "rate": lambda v: f"{v:.4g}/s",
}


def metric_spec(name: str) -> MetricSpec:
    """The catalog entry for ``name``, including ``gauge:NAME``; RuleError if unknown."""
    spec = METRICS.get(name)
    if spec is not None:
        return spec
    gauge = name.removeprefix(GAUGE_PREFIX)
    if gauge != name and _GAUGE_NAME.fullmatch(gauge):
        return MetricSpec(name, "count", "", f"user gauge {gauge} (mean of the readings)")
    hint = ", ".join(close_metrics(name)) or ", ".join(METRICS)
    raise RuleError(f"unknown metric {name!r} (try {hint}, or gauge:NAME)")


def close_metrics(name: str) -> list[str]:
    """Catalog names that look like ``name`` (typos), best first."""
    return difflib.get_close_matches(name, list(METRICS), n=3, cutoff=0.6)


def format_value(metric: str, value: float | None) -> str:
    """A metric's value as a person reads it: ``'8.2s'``, ``'5%'``, ``'400MB'``, ``'12'``."""
    if value is None:
        return "no data"
    show = _FORMATS.get(metric_spec(metric).kind)
    return f"{value:.6g}" if show is None else show(value)


# -- user gauges ---------------------------------------------------------------------------


# -- one definition of every metric, over either way of reading a window --------------------

SLOT_MEAN, MEAN, MAX = "slot_mean", "mean", "max"


class _Window(Protocol):
    """The figures of one window that the formulas need (both implementations agree).

    ``total``: ``requests``, ``errors``, ``latency_n``, ``latency_sum``; ``peak``: ``peak``
    (concurrency), ``latency_max``.
    """

    covered: float

    def total(self, name: str) -> float: ...
    def peak(self, name: str) -> float: ...
    def quantile(self, kind: str, q: float) -> float | None: ...
    def busy_ratio(self) -> float: ...
    def gauge(self, key: str, how: str) -> float | None: ...


Formula = Callable[[_Window], float | None]


def _avg(w: _Window) -> float | None:
    n = w.total("latency_n")
    return w.total("latency_sum") / n if n else None


def _error_rate(w: _Window) -> float | None:
    n = w.total("requests")
    return w.total("errors") / n if n else None


def _memory_mb(w: _Window) -> float | None:
    rss = w.gauge("rss_bytes", SLOT_MEAN)
    return None if rss is None else rss / _MIB


def _quantile_of(kind: str, q: float) -> Formula:
    return lambda w: w.quantile(kind, q)


def _gauge_of(key: str, how: str) -> Formula:
    return lambda w: w.gauge(key, how)


_FORMULAS: Final[Mapping[str, Formula]] = MappingProxyType(
    {
        "latency_avg": _avg,
        "latency_p50": _quantile_of("latency", 0.5),
        "latency_p90": _quantile_of("latency", 0.9),
        "latency_p95": _quantile_of("latency", 0.95),
        "latency_p99": _quantile_of("latency", 0.99),
        "latency_max": lambda w: w.peak("latency_max") if w.total("latency_n") else None,
        "rps": lambda w: w.total("requests") / w.covered,
        "requests_per_day": lambda w: w.total("requests") / w.covered * 86400.0,
        "error_rate": _error_rate,
        "concurrency_peak": lambda w: w.peak("peak"),
        "concurrency_avg": lambda w: w.total("latency_sum") / w.covered,
        "cpu_percent": _gauge_of("cpu_percent", SLOT_MEAN),
        "memory_mb": _memory_mb,
        "memory_percent": _gauge_of("memory_percent_of_limit", SLOT_MEAN),
        "event_loop_lag": _gauge_of("loop_lag_seconds", MAX),
        "busy_ratio": lambda w: w.busy_ratio(),
        "queue_time_p95": _quantile_of("queue", 0.95),
    }
)


def formula(metric: str) -> Formula:
    """How ``metric`` is computed from a window; RuleError for an unknown metric."""
    found = _FORMULAS.get(metric)
    if found is None:
        metric_spec(metric)  # raises with suggestions unless it is a valid gauge:NAME
        found = _gauge_of("user:" + metric.removeprefix(GAUGE_PREFIX), MEAN)
    return found


class _Combined:
    """A window read the plain way: :func:`combine` plus loops over the gauges."""

    def __init__(self, snaps: list[IntervalSnapshot], stats: WindowStats) -> None:
        self.snaps, self.stats, self.covered = snaps, stats, stats.covered
        latency = stats.latency
        self._totals: dict[str, float] = {"requests": stats.requests, "errors": stats.errors}
        self._totals |= {"latency_n": latency.count, "latency_sum": latency.sum}
        self._peaks: dict[str, float] = {"peak": stats.inflight_peak, "latency_max": latency.max}

    def total(self, name: str) -> float:
        return self._totals[name]

    def peak(self, name: str) -> float:
        return self._peaks[name]

    def quantile(self, kind: str, q: float) -> float | None:
        hist = self.stats.latency if kind == "latency" else self.stats.queue_time
        return hist.quantile(q) if hist.count else None

    def busy_ratio(self) -> float:
        return self.stats.busy_ratio

    def gauge(self, key: str, how: str) -> float | None:
        readings = [(s.start, s.gauges[key]) for s in self.snaps if key in s.gauges]
        if not readings:
            return None
        if how == MAX:
            return max(v for _, v in readings)
        if how == MEAN:
            return sum(v for _, v in readings) / len(readings)
        slots: dict[float, float] = {}
        for start, v in readings:
            slots[start] = slots.get(start, 0.0) + v
        return sum(slots.values()) / len(slots)


def metric_value(
    metric: str,
    snapshots: Sequence[IntervalSnapshot],
    window: float,
    now: float,
    interval: float = 10.0,
) -> float | None:
    """``metric`` over the ``window`` seconds before ``now``; ``None`` when there is no data.

    The window starts at a slot boundary (``floor(now / interval) * interval - window``) and
    takes every snapshot starting in ``[window start, now)``, of any worker.
    """
    fn = formula(metric)
    since = math.floor(now / interval) * interval - window
    snaps = [s for s in snapshots if since <= s.start < now]
    if not snaps:
        return None
    covered = now - max(since, min(s.start for s in snaps))
    return fn(_Combined(snaps, combine(snaps, window, covered)))


# -- fast evaluation over long histories ----------------------------------------------------

_BIG_ENDIAN: Final = sys.byteorder == "big"
_BLOCK: Final = 64  # slots between checkpoints of the cumulative histograms
_RUN: Final = 64  # values per run of a range max/min
_RECENT: Final = 1024  # cumulative histograms remembered for sliding windows
#: Per-slot columns: name → (reading of one snapshot, how the workers of a slot combine).
_COLUMNS: Final[Mapping[str, tuple[Callable[[IntervalSnapshot], float], Callable[..., float]]]] = {
    "requests": (attrgetter("requests"), sum),
    "errors": (attrgetter("errors"), sum),
    "busy": (attrgetter("busy_seconds"), sum),
    "peak": (attrgetter("inflight_peak"), sum),
    "latency_n": (attrgetter("latency.count"), sum),
    "latency_sum": (attrgetter("latency.sum"), sum),
    "latency_max": (attrgetter("latency.max"), max),
    "latency_min": (attrgetter("latency.min"), min),
    "queue_n": (attrgetter("queue_time.count"), sum),
    "queue_max": (attrgetter("queue_time.max"), max),
    "queue_min": (attrgetter("queue_time.min"), min),
}
_NO_READING: Final = (0.0, 0, 0, -math.inf)


class _RangePick:
    """``max`` (or ``min``) of ``values[i:j]`` in O(1), rebuilt in O(n) when values grow.

    Values are cut into runs of 64; each run keeps its running pick from either end
    (``itertools.accumulate``, C speed) and a sparse table over the runs' picks answers the
    whole runs a range spans. A range inside one run is a slice.
    """

    def __init__(self, values: array[float], pick: Callable[..., float]) -> None:
        self.values = values
        self._pick = pick
        self._built = -1
        self._head: array[float] = array("d")
        self._tail: array[float] = array("d")
        self._levels: list[array[float]] = []

    def _build(self) -> None:
        values, pick = self.values, self._pick
        self._head, self._tail, runs = array("d"), array("d"), array("d")
        for start in range(0, len(values), _RUN):
            part = values[start : start + _RUN]
            self._head.extend(accumulate(part, pick))
            tail = list(accumulate(reversed(part), pick))
            tail.reverse()
            self._tail.extend(tail)
            runs.append(tail[0])
        self._levels = [runs]
        while 1 << len(self._levels) <= len(runs):
            prev, half = self._levels[-1], 1 << (len(self._levels) - 1)
            self._levels.append(array("d", map(pick, prev, prev[half:])))
        self._built = len(values)

    def __call__(self, i: int, j: int) -> float:
        if self._built != len(self.values):
            self._build()
        first, last = i // _RUN, (j - 1) // _RUN
        if first == last:
            return self._pick(self.values[i:j])
        best = self._pick(self._tail[i], self._head[j - 1])
        if last - first > 1:
            k = (last - first - 1).bit_length() - 1
            level = self._levels[k]
            best = self._pick(best, level[first + 1], level[last - (1 << k)])
        return best


def _pack(hist: Histogram) -> int:
    """Bucket counts as one int, 64 bits per bucket: adding two packs adds the histograms."""
    counts = array("Q", hist._counts)  # the frozen span; read only
    if _BIG_ENDIAN:
        counts.byteswap()
    return int.from_bytes(counts.tobytes(), "little") << (64 * hist._lo)


def _quantile(packed: int, total: int, q: float, low: float, high: float) -> float:
    """:meth:`Histogram.quantile` (same rank rule and clamping) on packed counts."""
    if q <= 0.0:
        return low
    if q >= 1.0:
        return high
    lo = ((packed & -packed).bit_length() - 1) // 64  # first non-zero bucket
    span = (packed.bit_length() + 63) // 64 - lo
    counts = array("Q")
    counts.frombytes((packed >> (64 * lo)).to_bytes(8 * span, "little"))
    if _BIG_ENDIAN:
        counts.byteswap()
    index = lo + bisect_right(list(accumulate(counts)), q * (total - 1))
    if index >= BUCKETS - 1:  # the overflow bucket reports the exact maximum
        return high
    return min(max(bucket_value(index), low), high)


class _Cumulative:
    """``C(x)``: the packed histogram of slots ``[0, x)``; ``C(j) - C(i)`` is the range's.

    One big-int subtraction (C speed) replaces merging thousands of histograms. C is kept at
    every 64th slot, and for the 1024 points used last: each edge of a sliding window starts
    from its previous position, so every step packs only the slots the edge passed.
    """

    def __init__(self, slot: Callable[[int], int]) -> None:
        self._slot = slot
        self._checkpoints = [0]
        self._keys: list[int] = []  # sorted keys of _recent, which is in least-recent order
        self._recent: dict[int, int] = {}

    def __call__(self, x: int) -> int:
        value = self._recent.pop(x, None)
        if value is None:
            value = self._compute(x)
            insort(self._keys, x)
            if len(self._keys) >= _RECENT:
                oldest = next(iter(self._recent))
                del self._recent[oldest], self._keys[bisect_left(self._keys, oldest)]
        self._recent[x] = value
        return value

    def _compute(self, x: int) -> int:
        m = min(x // _BLOCK, len(self._checkpoints) - 1)
        y, value = m * _BLOCK, self._checkpoints[m]
        k = bisect_right(self._keys, x) - 1
        if k >= 0 and self._keys[k] > y:
            y = self._keys[k]
            value = self._recent[y]
        for s in range(y, x):
            value += self._slot(s)
            if s + 1 == len(self._checkpoints) * _BLOCK:
                self._checkpoints.append(value)
        return value


class SnapshotSource:
    """:func:`metric_value` for many windows over one long history, in microseconds per call.

    How: snapshots are grouped into slots (same ``start``), in start order. A window is a range
    of slots found by two binary searches. Totals (requests, errors, latency count and sum,
    busy time, gauges) are running sums over the slots, so a window's total is two array
    reads. Maxima and minima (peak concurrency, latency max/min, event-loop lag) come from
    sparse tables, O(1) per window. Percentiles use cumulative histograms packed into big
    integers (:class:`_Cumulative`): a 48-hour p95 is one subtraction and one pass over the
    buckets, not 17 280 merges. Every column is built the first time a metric needs it, so a
    policy pays only for the metrics it uses. Results equal :func:`metric_value`'s up to float
    rounding of sums.

    Snapshots may come from many workers and arrive in batches (:meth:`extend`); a batch that
    starts before the last slot rebuilds the index.

    Example:
        >>> source = SnapshotSource(snapshots, interval=10)  # doctest: +SKIP
        >>> source.value("latency_p95", window=600, now=1_700_000_000)  # doctest: +SKIP
    """

    def __init__(self, snapshots: Iterable[IntervalSnapshot] = (), interval: float = 10.0) -> None:
        self.interval = interval
        self._formulas: dict[str, Formula] = dict(_FORMULAS)
        self._reset()
        self.extend(snapshots)

    def _reset(self) -> None:
        self.starts: list[float] = []
        self._members: list[tuple[IntervalSnapshot, ...]] = []
        self._sums: dict[str, array[float]] = {}
        self._picks: dict[str, _RangePick] = {}
        self._gauges: dict[str, tuple[array[float], array[float], array[float], _RangePick]] = {}
        self._cumulative: dict[str, _Cumulative] = {}
        self._workers: dict[int, list[int]] = {}
        self._workers_built = 0

    def __len__(self) -> int:
        return len(self.starts)

    def extend(self, snapshots: Iterable[IntervalSnapshot]) -> None:
        """Add snapshots; appending is incremental, anything older rebuilds the index."""
        new = sorted(snapshots, key=_start)
        if new and self.starts and new[0].start <= self.starts[-1]:
            new = sorted([*(s for m in self._members for s in m), *new], key=_start)
            self._reset()
        for start, group in groupby(new, key=_start):
            self.starts.append(start)
            self._members.append(tuple(group))

    def value(self, metric: str, window: float, now: float) -> float | None:
        """``metric_value(metric, snapshots, window, now, interval)``, without rescanning."""
        fn = self._formulas.get(metric)
        if fn is None:
            fn = self._formulas[metric] = formula(metric)
        since = math.floor(now / self.interval) * self.interval - window
        starts = self.starts
        i = bisect_left(starts, since)
        j = bisect_left(starts, now, i)
        if i >= j:
            return None
        return fn(_Indexed(self, i, j, now - max(since, starts[i])))

    # -- columns, each built on first use and extended when slots are appended --------------

    def _column(self, name: str, first: int) -> list[float]:
        get, combine_slot = _COLUMNS[name]
        return [
            get(g[0]) if len(g) == 1 else combine_slot(map(get, g)) for g in self._members[first:]
        ]

    def totals(self, name: str) -> array[float]:
        """Running sums of a column: ``totals[j] - totals[i]`` is slots ``[i, j)``'s total."""
        sums = self._sums.get(name)
        if sums is None or len(sums) <= len(self._members):
            sums = self._sums.setdefault(name, array("d", [0.0]))
            _running(sums, self._column(name, len(sums) - 1))
        return sums

    def pick(self, name: str) -> _RangePick:
        """Range max (or min, by name) of a column."""
        found = self._picks.get(name)
        if found is None or len(found.values) < len(self._members):
            found = self._picks.setdefault(
                name, _RangePick(array("d"), min if "min" in name else max)
            )
            found.values.extend(self._column(name, len(found.values)))
        return found

    def gauge(self, key: str) -> tuple[array[float], array[float], array[float], _RangePick]:
        """Running sums of a gauge's slot sums, slots with a reading and readings; slot maxima."""
        found = self._gauges.get(key)
        if found is None:
            arrays = (array("d", [0.0]), array("d", [0.0]), array("d", [0.0]))
            found = self._gauges[key] = (*arrays, _RangePick(array("d"), max))
        sums, slots, count, top = found
        if len(sums) <= len(self._members):
            rows = self._gauge_rows(key, len(sums) - 1)
            _running(sums, (row[0] for row in rows))
            _running(slots, (row[1] for row in rows))
            _running(count, (row[2] for row in rows))
            top.values.extend(row[3] for row in rows)
        return found

    def _gauge_rows(self, key: str, first: int) -> list[tuple[float, int, int, float]]:
        rows = []
        for g in self._members[first:]:
            if len(g) == 1:
                v = g[0].gauges.get(key)
                rows.append(_NO_READING if v is None else (v, 1, 1, v))
                continue
            values = [s.gauges[key] for s in g if key in s.gauges]
            rows.append((sum(values), 1, len(values), max(values)) if values else _NO_READING)
        return rows

    def workers(self) -> dict[int, list[int]]:
        """Worker → the slots it has a snapshot in (for the busy ratio's divisor)."""
        for index in range(self._workers_built, len(self._members)):
            for s in self._members[index]:
                self._workers.setdefault(s.worker, []).append(index)
        self._workers_built = len(self._members)
        return self._workers

    def cumulative(self, kind: str) -> _Cumulative:
        found = self._cumulative.get(kind)
        if found is None:
            members, field = self._members, "latency" if kind == "latency" else "queue_time"

            def slot(s: int) -> int:
                group = members[s]
                if len(group) == 1:
                    return _pack(getattr(group[0], field))
                return sum(_pack(getattr(m, field)) for m in group)

            found = self._cumulative[kind] = _Cumulative(slot)
        return found


def _start(snapshot: IntervalSnapshot) -> float:
    return snapshot.start


def _running(sums: array[float], values: Iterable[float]) -> None:
    sums.extend(islice(accumulate(values, initial=sums[-1]), 1, None))


class _Indexed:
    """A window of a :class:`SnapshotSource`: slots ``[i, j)``."""

    __slots__ = ("covered", "i", "j", "src")

    def __init__(self, src: SnapshotSource, i: int, j: int, covered: float) -> None:
        self.src, self.i, self.j, self.covered = src, i, j, covered

    def total(self, name: str) -> float:
        sums = self.src.totals(name)
        return sums[self.j] - sums[self.i]

    def peak(self, name: str) -> float:
        return self.src.pick(name)(self.i, self.j)

    def quantile(self, kind: str, q: float) -> float | None:
        total = round(self.total(f"{kind}_n"))
        if not total:
            return None
        cumulative = self.src.cumulative(kind)
        packed = cumulative(self.j) - cumulative(self.i)
        i, j = self.i, self.j
        low, high = self.src.pick(f"{kind}_min")(i, j), self.src.pick(f"{kind}_max")(i, j)
        return _quantile(packed, total, q, low, high)

    def busy_ratio(self) -> float:
        workers = 0
        for slots in self.src.workers().values():
            k = bisect_left(slots, self.i)
            workers += k < len(slots) and slots[k] < self.j
        return min(1.0, self.total("busy") / max(1, workers) / self.covered)

    def gauge(self, key: str, how: str) -> float | None:
        sums, slots, count, top = self.src.gauge(key)
        i, j = self.i, self.j
        if slots[j] == slots[i]:
            return None
        if how == MAX:
            return top(i, j)
        divisor = count if how == MEAN else slots
        return (sums[j] - sums[i]) / (divisor[j] - divisor[i])
