"""The recorder: the one object the middleware calls on every request.

It owns one worker's figures: cumulative Prometheus series, the rolling windows, the in-flight
gauge, worker busy time and process gauges. It is framework-agnostic (the middleware resolves
route templates) and does no I/O.

The request path is kept to a few attribute updates, one dict lookup and one ``list.append``:
finished requests wait in a small buffer, keyed by label set so label lookups are paid once
per label set and batch, and are folded into series and histograms in batches: when the
buffer fills, when an interval boundary passes (before the event that crossed it, so every
request lands in its own interval and busy time and peaks stay exact), and before any read.
Reads go through ``table`` and ``windows``, which flush first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Final

from scalewise.clock import Clock, SystemClock
from scalewise.metrics.series import RequestSeries, SeriesTable
from scalewise.metrics.windows import (
    IntervalSnapshot,
    RollingWindows,
    RouteSlot,
    Slot,
    WindowStats,
)
from scalewise.options import MetricsOptions

OVERFLOW_ROUTE: Final = "__other__"
OVERFLOW_METHOD: Final = "OTHER"
UNMATCHED_ROUTE: Final = "__unmatched__"
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
STATUS_CLASSES: Final = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
BATCH: Final = 256
#: ASGI scope key under which ``ScalewiseMiddleware`` hands its recorder to inner middleware
#: (the guards), which are built before the monitor exists and so cannot be given it.
SCOPE_KEY: Final = "scalewise.recorder"

logger = logging.getLogger("scalewise")


def status_class(status: int) -> str:
    return STATUS_CLASSES[status // 100] if 0 <= status < 600 else "5xx"


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
        self._monotonic = self.clock.monotonic
        self._wall_offset = self.clock.wall() - self._monotonic()
        self.started_at = self.clock.wall()
        self._windows = RollingWindows(
            self.options.interval, self.options.history, now=self.started_at, worker=self.worker
        )
        self._table = SeriesTable(self.options.buckets, self.options.queue_buckets)
        self._boundary = self._windows.slot_end - self._wall_offset  # monotonic
        # Finished requests not yet folded in: durations by label set, plus the rarer extras.
        self._pending: dict[tuple[str, str, int], list[float]] = {}
        self._room = BATCH  # requests the buffer takes before it is folded in
        self._streamed: list[tuple[float, float]] = []  # (ttfb, total) of streamed responses
        self._queued: list[float] = []
        self._disconnects = 0
        self.inflight = 0
        self._peak = 0  # most in flight since the last flush
        self._busy_since = 0.0
        self._busy_total = 0.0  # seconds with ≥ 1 request in flight, up to the last idle moment
        self._busy_flushed = 0.0
        self.gauges: dict[str, float] = {}
        self.snapshot_listeners: list[Callable[[IntervalSnapshot], None]] = []
        self._routes: set[str] = set()

    def reset(self, worker: int | None = None) -> None:
        """Start over with no figures (a forked child must not report its parent's)."""
        self.__init__(self.options, self.clock, worker)  # type: ignore[misc]

    # -- the request path ---------------------------------------------------------------

    def started(self) -> float:
        """A request began; returns its monotonic start time."""
        now = self._monotonic()
        if now >= self._boundary:
            self._flush(now)
        n = self.inflight = self.inflight + 1
        if n == 1:
            self._busy_since = now
        if n > self._peak:
            self._peak = n
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
        """A request ended at monotonic ``end``; ``status`` 500 for unhandled exceptions.

        ``ttfb`` is for responses sent in several parts; ``None`` means the first bytes left
        with the last (TTFB = latency), which costs nothing extra to record.
        """
        if end >= self._boundary:
            self._flush(end)
        n = self.inflight = self.inflight - 1
        if not n:
            self._busy_total += end - self._busy_since
        durations = self._pending.get((method, route, status))
        if durations is None:
            durations = self._pending[method, route, status] = []
        durations.append(end - start)
        if ttfb is not None:  # streamed; one-piece responses' TTFB is their latency
            self._streamed.append((ttfb, end - start))
        if queue is not None:
            self._queued.append(queue)
        if disconnected:
            self._disconnects += 1
        room = self._room = self._room - 1
        if not room:
            self._flush(end)

    def count(self, counter: str, n: float = 1) -> None:
        """Bump a process-wide counter (exceptions, internal_errors, …)."""
        counters = self._table.counters
        counters[counter] = counters.get(counter, 0) + n

    # -- folding the buffer in -----------------------------------------------------------

    def _flush(self, now: float) -> None:
        """Fold pending requests, busy time and the peak into the open interval at ``now``;
        then close intervals that ended (state is still as it was at their boundary)."""
        if now >= self._boundary:
            self._fold(self._boundary)
            self._roll(now)
        else:
            self._fold(now)

    def _fold(self, at: float) -> None:
        slot = self._windows.current
        busy = self._busy_total + (at - self._busy_since if self.inflight > 0 else 0.0)
        slot.busy_seconds += busy - self._busy_flushed
        self._table.counters["busy_seconds"] += busy - self._busy_flushed
        self._busy_flushed = busy
        if self._peak > slot.inflight_peak:
            slot.inflight_peak = self._peak
        self._peak = self.inflight
        if self._room < BATCH:
            self._fold_requests(slot)

    def _fold_requests(self, slot: Slot) -> None:
        table = self._table
        pending, self._pending, self._room = self._pending, {}, BATCH
        # Label lookups are paid once per label set in the batch, not once per request.
        for (method, route, status), durations in pending.items():
            self._fold_group(slot, method, route, status, durations)
        if self._streamed:
            ttfbs, totals = zip(*self._streamed, strict=True)
            self._streamed = []
            slot.ttfb.record_all(ttfbs)
            slot.streamed.record_all(totals)
            table.ttfb.observe_all(ttfbs)
            table.streamed.observe_all(totals)
        if self._queued:
            queued, self._queued = self._queued, []
            slot.queue_time.record_all(queued)
            table.queue_time.observe_all(queued)
        if self._disconnects:
            slot.disconnects += self._disconnects
            table.counters["disconnects"] += self._disconnects
            self._disconnects = 0

    def _fold_group(
        self, slot: Slot, method: str, route: str, status: int, durations: list[float]
    ) -> None:
        """Fold requests with one label set into their series and their route's slot."""
        requests = self._table.requests
        labels = (method, route, status_class(status))
        cell = requests.get(labels)
        if cell is None:
            cell = self._series(method, route, status)
            if labels not in requests:  # folded into overflow labels: each request counts
                for _ in range(len(durations) - 1):
                    self._series(method, route, status)
        stats = slot.routes.get(cell.key)
        if stats is None:
            stats = slot.routes[cell.key] = RouteSlot()
        cell.duration.observe_all(durations)
        stats.latency.record_all(durations)
        if status >= 400:
            for _ in durations:
                slot.count_error(stats, status)

    def _series(self, method: str, route: str, status: int) -> RequestSeries:
        """The series for a new label set, folding it into overflow labels past the caps."""
        table = self._table
        if method not in KNOWN_METHODS:
            method = OVERFLOW_METHOD
        if route not in self._routes:
            if len(self._routes) >= self.options.max_routes:
                table.counters["route_overflow"] += 1
                route = OVERFLOW_ROUTE
            else:
                self._routes.add(route)
        # Keep room for the six overflow series so the total never passes max_series.
        labels = (method, route, status_class(status))
        if labels not in table.requests and len(table.requests) >= self.options.max_series - 6:
            table.counters["route_overflow"] += 1
            labels = (OVERFLOW_METHOD, OVERFLOW_ROUTE, labels[2])
        return table.series(*labels)

    def _roll(self, now: float) -> None:
        """Close the open interval (and idle ones after it) up to monotonic ``now``."""
        wall = now + self._wall_offset
        inflight = self.inflight
        closed = self._windows.roll(wall, self.gauges, inflight)
        if inflight > 0:  # idle intervals in between were busy throughout (roll set them)
            skipped = sum(s.busy_seconds for s in closed[1:])
            self._table.counters["busy_seconds"] += skipped
            self._busy_flushed += skipped  # now the busy total at the new interval's start
        # What happened since the new interval began is folded in at the next flush.
        self._peak = inflight
        for snap in closed:
            for listener in self.snapshot_listeners:
                listener(snap)
        # Re-anchor wall time so the two clocks cannot drift apart over days.
        self._wall_offset = self.clock.wall() - self._monotonic()
        self._boundary = self._windows.slot_end - self._wall_offset

    # -- reads (each folds the buffer in first) -------------------------------------------

    def flush(self) -> None:
        """Fold everything pending in now (reads do this themselves)."""
        self._flush(self._monotonic())

    @property
    def table(self) -> SeriesTable:
        self.flush()
        return self._table

    @property
    def windows(self) -> RollingWindows:
        self.flush()
        return self._windows

    def now(self) -> float:
        """Current wall time as the recorder sees it."""
        return self._monotonic() + self._wall_offset

    def tick(self) -> None:
        """Close finished intervals even when no request arrives (called by the ticker)."""
        self.flush()

    def recent(self, seconds: float) -> list[IntervalSnapshot]:
        return self.windows.recent(seconds, self.now(), self.gauges)

    def window(self, seconds: float) -> WindowStats:
        return self.windows.window(seconds, self.now())

    def routes(self) -> frozenset[str]:
        return frozenset(self._routes)
