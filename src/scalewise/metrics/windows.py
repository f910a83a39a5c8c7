"""Rolling windows: per-interval slots in a bounded ring, and queries over the last N seconds.

Each slot covers one interval (default 10 s) aligned to wall-clock multiples of the interval,
so slots of different workers, or of a worker and the store, line up and merge one-to-one.
When a slot closes it becomes an :class:`IntervalSnapshot`: immutable, small (histograms are
frozen to their non-zero span) and serialisable, the unit the store will persist.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scalewise.metrics.histogram import EMPTY, FrozenHistogram, Histogram, merge_all

QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    """One route's figures for one interval."""

    requests: int
    errors: int
    client_errors: int
    latency: FrozenHistogram

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "latency": self.latency.to_text(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteSnapshot:
        return cls(
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            client_errors=int(data["client_errors"]),
            latency=Histogram.from_text(data["latency"]).freeze(),
        )


@dataclass(frozen=True, slots=True)
class IntervalSnapshot:
    """Everything one worker measured in one interval ``[start, start + seconds)``.

    ``errors`` counts 5xx responses and unhandled exceptions; ``client_errors`` counts 4xx.
    ``busy_seconds`` is the time at least one request was in flight (worker busy time);
    the sum of latencies over the interval is average concurrency by Little's law.
    """

    start: float
    seconds: float
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    disconnects: int = 0
    inflight_peak: int = 0
    busy_seconds: float = 0.0
    latency: FrozenHistogram = field(default_factory=lambda: EMPTY)
    ttfb: FrozenHistogram = field(default_factory=lambda: EMPTY)
    queue_time: FrozenHistogram = field(default_factory=lambda: EMPTY)
    routes: Mapping[str, RouteSnapshot] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)
    worker: int = 0

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; histograms as base64 of their compact bytes."""
        return {
            "start": self.start,
            "seconds": self.seconds,
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "disconnects": self.disconnects,
            "inflight_peak": self.inflight_peak,
            "busy_seconds": self.busy_seconds,
            "latency": self.latency.to_text(),
            "ttfb": self.ttfb.to_text(),
            "queue_time": self.queue_time.to_text(),
            "routes": {name: r.to_dict() for name, r in self.routes.items()},
            "gauges": dict(self.gauges),
            "worker": self.worker,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntervalSnapshot:
        def hist(key: str) -> FrozenHistogram:
            return Histogram.from_text(data[key]).freeze()

        return cls(
            start=float(data["start"]),
            seconds=float(data["seconds"]),
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            client_errors=int(data["client_errors"]),
            disconnects=int(data.get("disconnects", 0)),
            inflight_peak=int(data["inflight_peak"]),
            busy_seconds=float(data["busy_seconds"]),
            latency=hist("latency"),
            ttfb=hist("ttfb"),
            queue_time=hist("queue_time"),
            routes={k: RouteSnapshot.from_dict(v) for k, v in data.get("routes", {}).items()},
            gauges={k: float(v) for k, v in data.get("gauges", {}).items()},
            worker=int(data.get("worker", 0)),
        )


class RouteSlot:
    """One route's counters in the open slot; its histogram's count is the request count."""

    __slots__ = ("client_errors", "errors", "latency")

    def __init__(self) -> None:
        self.errors = 0
        self.client_errors = 0
        self.latency = Histogram()


class Slot:
    """The open interval: mutable counters the recorder updates on every request.

    The slot-wide latency histogram is not recorded per request; it is the merge of the
    route histograms, computed when the slot closes (one record per request, not two).
    """

    __slots__ = (
        "busy_seconds",
        "client_errors",
        "disconnects",
        "errors",
        "inflight_peak",
        "queue_time",
        "routes",
        "seconds",
        "start",
        "streamed",
        "ttfb",
    )

    def __init__(self, start: float, seconds: float, inflight: int = 0) -> None:
        self.start = start
        self.seconds = seconds
        self.errors = 0
        self.client_errors = 0
        self.disconnects = 0
        self.inflight_peak = inflight
        self.busy_seconds = 0.0
        self.ttfb = Histogram()  # only responses sent in several parts (see ``close``)
        self.streamed = Histogram()  # total latency of those same responses
        self.queue_time = Histogram()
        self.routes: dict[str, RouteSlot] = {}

    def add(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request (status ≥ 500 is an error, 4xx a client error)."""
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteSlot()
        stats.latency.record(seconds)
        if status >= 400:
            self.count_error(stats, status)

    def count_error(self, stats: RouteSlot, status: int) -> None:
        if status >= 500:
            self.errors += 1
            stats.errors += 1
        else:
            self.client_errors += 1
            stats.client_errors += 1

    def _ttfb(self, latency: Histogram) -> Histogram:
        """Time to first byte of every response: a response sent in one piece got its first
        byte when it ended, so its TTFB is its latency; only streamed ones were recorded."""
        return latency.copy().subtract(self.streamed).merge(self.ttfb)

    def close(
        self, gauges: Mapping[str, float], worker: int, now: float | None = None
    ) -> IntervalSnapshot:
        """Freeze into a snapshot; ``now`` shortens a still-open interval (partial view)."""
        seconds = self.seconds if now is None else max(0.0, min(self.seconds, now - self.start))
        routes = {
            name: RouteSnapshot(r.latency.count, r.errors, r.client_errors, r.latency.freeze())
            for name, r in list(self.routes.items())
        }
        latency = merge_all(r.latency for r in routes.values())
        return IntervalSnapshot(
            start=self.start,
            seconds=seconds,
            requests=latency.count,
            errors=self.errors,
            client_errors=self.client_errors,
            disconnects=self.disconnects,
            inflight_peak=self.inflight_peak,
            busy_seconds=self.busy_seconds,
            latency=latency.freeze(),
            ttfb=self._ttfb(latency).freeze(),
            queue_time=self.queue_time.freeze(),
            routes=routes,
            gauges=dict(gauges),
            worker=worker,
        )


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """avg/max and the standard percentiles of one histogram, in seconds."""

    avg: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, hist: Histogram) -> LatencySummary:
        p50, p90, p95, p99 = hist.quantiles(QUANTILES)
        return cls(hist.mean, hist.max, p50, p90, p95, p99)

    def to_dict(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 6) for k in ("avg", "max", "p50", "p90", "p95", "p99")}


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Figures over a window of the last ``seconds`` (``covered`` of which had data)."""

    seconds: float
    covered: float
    requests: int
    errors: int
    client_errors: int
    disconnects: int
    latency: Histogram
    ttfb: Histogram
    queue_time: Histogram
    inflight_peak: int
    busy_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.covered if self.covered > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def avg_concurrency(self) -> float:
        """Little's law: total time spent in requests / wall time."""
        return self.latency.sum / self.covered if self.covered > 0 else 0.0

    @property
    def busy_ratio(self) -> float:
        return min(1.0, self.busy_seconds / self.covered) if self.covered > 0 else 0.0

    def quantile(self, q: float) -> float:
        return self.latency.quantile(q)


def combine(snapshots: Iterable[IntervalSnapshot], seconds: float, covered: float) -> WindowStats:
    """Add up snapshots (of one worker or many) into one window's figures.

    Peak concurrency of several workers adds per interval (they ran side by side), then takes
    the maximum over intervals.
    """
    snaps = list(snapshots)
    peaks: dict[float, int] = {}
    busy: dict[float, float] = {}
    for s in snaps:
        peaks[s.start] = peaks.get(s.start, 0) + s.inflight_peak
        busy[s.start] = busy.get(s.start, 0.0) + s.busy_seconds
    workers = max(1, len({s.worker for s in snaps}))
    return WindowStats(
        seconds=seconds,
        covered=covered,
        requests=sum(s.requests for s in snaps),
        errors=sum(s.errors for s in snaps),
        client_errors=sum(s.client_errors for s in snaps),
        disconnects=sum(s.disconnects for s in snaps),
        latency=merge_all(s.latency for s in snaps),
        ttfb=merge_all(s.ttfb for s in snaps),
        queue_time=merge_all(s.queue_time for s in snaps),
        inflight_peak=max(peaks.values(), default=0),
        # Busy time is per worker; report the fleet's mean share.
        busy_seconds=sum(busy.values()) / workers,
    )


def route_table(
    snapshots: Iterable[IntervalSnapshot], covered: float, top: int
) -> list[dict[str, Any]]:
    """Per-route figures, busiest first (by total time spent), at most ``top`` rows."""
    merged: dict[str, list[Any]] = {}
    for snap in snapshots:
        for name, r in snap.routes.items():
            row = merged.setdefault(name, [0, 0, 0, Histogram()])
            row[0] += r.requests
            row[1] += r.errors
            row[2] += r.client_errors
            row[3].merge(r.latency)
    rows = sorted(merged.items(), key=lambda kv: kv[1][3].sum, reverse=True)[:top]
    table = []
    for name, (requests, errors, client_errors, hist) in rows:
        method, _, route = name.partition(" ")
        table.append(
            {
                "method": method,
                "route": route,
                "requests": requests,
                "rps": round(requests / covered, 4) if covered > 0 else 0.0,
                "error_rate": round(errors / requests, 6) if requests else 0.0,
                "client_error_rate": round(client_errors / requests, 6) if requests else 0.0,
                "latency": LatencySummary.of(hist).to_dict(),
                "time_share": 0.0,
            }
        )
    total = sum(row[3].sum for row in merged.values())
    for entry, (_, row) in zip(table, rows, strict=True):
        entry["time_share"] = round(row[3].sum / total, 4) if total > 0 else 0.0
    return table


class RollingWindows:
    """A ring of closed interval snapshots plus the open slot; memory bounded by ``history``.

    Times are wall-clock seconds (the recorder converts its monotonic readings once).

    Example:
        >>> w = RollingWindows(interval=10, history=900, now=1000.0)
        >>> w.slot_for(1001.0).add("GET /items/{id}", 200, 0.05)
        >>> w.window(60, now=1005.0).requests
        1
    """

    def __init__(
        self, interval: float = 10.0, history: float = 900.0, now: float = 0.0, worker: int = 0
    ) -> None:
        self.interval = interval
        self.history = history
        self.worker = worker
        self.started = now
        self._ring: deque[IntervalSnapshot] = deque(maxlen=max(1, math.ceil(history / interval)))
        self.current = Slot(self._align(now), interval)
        self.slot_end = self.current.start + interval

    def _align(self, t: float) -> float:
        return math.floor(t / self.interval) * self.interval

    def slot_for(
        self, now: float, gauges: Mapping[str, float] | None = None, inflight: int = 0
    ) -> Slot:
        """The open slot for time ``now``, closing finished ones first."""
        if now >= self.slot_end:
            self.roll(now, gauges or {}, inflight)
        return self.current

    def roll(
        self, now: float, gauges: Mapping[str, float], inflight: int = 0
    ) -> list[IntervalSnapshot]:
        """Close the open slot (and record empty ones for idle intervals) up to ``now``.

        Returns the snapshots it closed, oldest first. Idle intervals that passed while
        ``inflight`` requests ran count as busy throughout.
        """
        closed = [self.current.close(gauges, self.worker)]
        start = self.slot_end
        next_start = self._align(now)
        # Idle intervals still happened: keep them (empty) so windows and the store see zeros.
        first_idle = max(start, next_start - self._ring.maxlen * self.interval)
        t = first_idle
        busy = self.interval if inflight > 0 else 0.0
        while t < next_start:
            closed.append(
                IntervalSnapshot(
                    start=t,
                    seconds=self.interval,
                    inflight_peak=inflight,
                    busy_seconds=busy,
                    worker=self.worker,
                )
            )
            t += self.interval
        self._ring.extend(closed)
        self.current = Slot(next_start, self.interval, inflight)
        self.slot_end = next_start + self.interval
        return closed

    def snapshots(self, since: float = -math.inf) -> list[IntervalSnapshot]:
        """Closed snapshots starting at or after ``since``, oldest first."""
        return [s for s in self._ring if s.start >= since]

    def window_start(self, seconds: float, now: float) -> float:
        """Where a window of ``seconds`` ending in the open slot begins (a slot boundary)."""
        return self._align(now) - seconds

    def recent(
        self, seconds: float, now: float, gauges: Mapping[str, float] | None = None
    ) -> list[IntervalSnapshot]:
        """The whole closed slots of the window plus the open slot's partial view."""
        since = self.window_start(seconds, now)
        snaps = [s for s in self._ring if s.start >= since]
        if self.current.start >= since:
            # A slot nobody rolled yet (no request, no tick) is over once now passes its end.
            partial = now if now < self.slot_end else None
            snaps.append(self.current.close(gauges or {}, self.worker, now=partial))
        return snaps

    def covered(self, seconds: float, now: float) -> float:
        """Seconds of the window this process was measuring: full slots plus the open part."""
        return max(0.0, now - max(self.window_start(seconds, now), self.started))

    def window(self, seconds: float, now: float) -> WindowStats:
        return combine(self.recent(seconds, now), seconds, self.covered(seconds, now))
