"""The recorder: the one object the middleware calls on every request.

It owns one worker's figures: cumulative Prometheus series, the rolling windows, the in-flight
gauge, worker busy time and process gauges. It is framework-agnostic (the middleware resolves
route templates) and does no I/O; the background ticker samples the process and flushes.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Final

from scalewise.clock import Clock, SystemClock
from scalewise.metrics.series import RequestSeries, SeriesTable
from scalewise.metrics.windows import IntervalSnapshot, RollingWindows, RouteSlot, Slot
from scalewise.options import MetricsOptions

OVERFLOW_ROUTE: Final = "__other__"
UNMATCHED_ROUTE: Final = "__unmatched__"
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_STATUS_CLASS: Final = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")

logger = logging.getLogger("scalewise")


class Recorder:
    """One worker's measurements. Single-threaded by design (an event loop); the WSGI
    middleware serialises calls with a lock.

    Example:
        >>> from scalewise.clock import ManualClock
        >>> rec = Recorder(clock=ManualClock())
        >>> t0 = rec.started()
        >>> rec.finished("GET", "/items/{id}", 200, t0, t0 + 0.02)
        >>> rec.window(60).requests
        1
    """

    def __init__(
        self,
        options: MetricsOptions | None = None,
        clock: Clock | None = None,
        worker: int | None = None,
    ) -> None:
        self.options = options or MetricsOptions()
        self.clock: Clock = clock or SystemClock()
        self.worker = os.getpid() if worker is None else worker
        self._wall_offset = self.clock.wall() - self.clock.monotonic()
        self.started_at = self.clock.wall()
        self.windows = RollingWindows(
            self.options.interval, self.options.history, now=self.started_at, worker=self.worker
        )
        self.table = SeriesTable(self.options.buckets, self.options.queue_buckets)
        self.inflight = 0
        self.gauges: dict[str, float] = {}
        self.snapshot_listeners: list[Callable[[IntervalSnapshot], None]] = []
        self._routes: set[str] = set()
        self._busy_since = 0.0
        self._max_routes = self.options.max_routes

    def reset(self, worker: int | None = None) -> None:
        """Start over with no figures (a forked child must not report its parent's)."""
        self.__init__(self.options, self.clock, worker)  # type: ignore[misc]

    # -- the request path ---------------------------------------------------------------

    def started(self) -> float:
        """A request began; returns its monotonic start time."""
        now = self.clock.monotonic()
        slot = self._slot(now)  # roll first: idle intervals before this request had no peak
        if self.inflight == 0:
            self._busy_since = now
        self.inflight += 1
        slot.inflight_peak = max(slot.inflight_peak, self.inflight)
        return now

    def finished(
        self,
        method: str,
        route: str,
        status: int,
        start: float,
        end: float,
        ttfb: float | None = None,
        queue: float | None = None,
        disconnected: bool = False,
    ) -> None:
        """A request ended at monotonic ``end``; ``status`` 500 for unhandled exceptions."""
        seconds = end - start
        slot = self._slot(end)
        self.inflight -= 1
        if self.inflight == 0:
            busy = end - self._busy_since
            slot.busy_seconds += busy
            self.table.counters["busy_seconds"] += busy
        cell = self.table.requests.get(
            (method, route, _STATUS_CLASS[status // 100] if 0 <= status < 600 else "5xx")
        ) or self._series(method, route, status)
        hist = cell.duration
        hist.counts[bisect_left(hist.bounds, seconds)] += 1
        hist.count += 1
        hist.sum += seconds
        stats = slot.routes.get(cell.key)
        if stats is None:
            stats = slot.routes[cell.key] = RouteSlot()
        stats.latency.record(seconds)
        if status >= 400:
            slot.count_error(stats, status)
        if ttfb is not None:
            slot.ttfb.record(ttfb)
            self.table.ttfb.observe(ttfb)
        if queue is not None:
            slot.queue_time.record(queue)
            self.table.queue_time.observe(queue)
        if disconnected:
            slot.disconnects += 1
            self.table.counters["disconnects"] += 1

    def count(self, counter: str, n: float = 1) -> None:
        """Bump a process-wide counter (exceptions, internal_errors, …)."""
        self.table.counters[counter] = self.table.counters.get(counter, 0) + n

    def _series(self, method: str, route: str, status: int) -> RequestSeries:
        status_class = _STATUS_CLASS[status // 100] if 0 <= status < 600 else "5xx"
        cell = self.table.requests.get((method, route, status_class))
        if cell is not None:
            return cell
        if method not in KNOWN_METHODS:
            method = "OTHER"
        if route not in self._routes:
            if len(self._routes) >= self._max_routes:
                self.table.counters["route_overflow"] += 1
                route = OVERFLOW_ROUTE
            else:
                self._routes.add(route)
        return self.table.series(method, route, status_class)

    def _slot(self, now: float) -> Slot:
        wall = now + self._wall_offset
        if wall >= self.windows.slot_end:
            self._roll(wall)
        return self.windows.current

    def _roll(self, wall: float) -> None:
        closing_end = self.windows.slot_end
        if self.inflight > 0:  # credit busy time up to the closing slot's end
            boundary = closing_end - self._wall_offset
            busy = max(0.0, boundary - self._busy_since)
            self.windows.current.busy_seconds += busy
            self.table.counters["busy_seconds"] += busy
        closed = self.windows.roll(wall, self.gauges, self.inflight)
        if self.inflight > 0:  # idle slots in between were busy throughout (roll set them)
            self.table.counters["busy_seconds"] += sum(s.busy_seconds for s in closed[1:])
            self._busy_since = max(self._busy_since, self.windows.current.start - self._wall_offset)
        for snap in closed:
            for listener in self.snapshot_listeners:
                listener(snap)
        # Re-anchor wall time so the two clocks cannot drift apart over days.
        self._wall_offset = self.clock.wall() - self.clock.monotonic()

    # -- queries -------------------------------------------------------------------------

    def now(self) -> float:
        """Current wall time as the recorder sees it."""
        return self.clock.monotonic() + self._wall_offset

    def tick(self) -> None:
        """Close finished intervals even when no request arrives (called by the ticker)."""
        self._slot(self.clock.monotonic())

    def recent(self, seconds: float) -> list[IntervalSnapshot]:
        return self.windows.recent(seconds, self.now(), self.gauges)

    def window(self, seconds: float) -> Any:
        return self.windows.window(seconds, self.now())

    def routes(self) -> frozenset[str]:
        return frozenset(self._routes)
