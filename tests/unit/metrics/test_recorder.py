"""The recorder on a manual clock: counts, concurrency, busy time, route cap, the ring."""

from __future__ import annotations

import pytest

from scalewise.clock import ManualClock
from scalewise.metrics.recorder import OVERFLOW_ROUTE, Recorder
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.options import MetricsOptions

WALL_START = 1_700_000_000.0  # ManualClock's default wall time at monotonic 0 (a slot edge)
CAP = 3


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def rec(clock: ManualClock) -> Recorder:
    return Recorder(MetricsOptions(multiprocess_dir=None, max_routes=CAP), clock=clock, worker=7)


def serve(
    rec: Recorder,
    clock: ManualClock,
    seconds: float,
    method: str = "GET",
    route: str = "/items/{id}",
    status: int = 200,
    **extra: object,
) -> None:
    """One request that starts now and takes ``seconds`` of manual time."""
    start = rec.started()
    clock.advance(seconds)
    rec.finished(method, route, status, start, clock.monotonic(), **extra)  # type: ignore[arg-type]


def series_counts(rec: Recorder) -> dict[tuple[str, str, str], int]:
    return {labels: s.duration.count for labels, s in rec.table.requests.items()}


def starts(snaps: list[IntervalSnapshot]) -> list[float]:
    return [s.start - WALL_START for s in snaps]


def test_started_and_finished_are_counted(rec: Recorder, clock: ManualClock) -> None:
    assert rec.started_at == WALL_START
    assert rec.worker == 7
    for _ in range(3):
        serve(rec, clock, 0.1)
    serve(rec, clock, 0.2, method="POST", route="/orders", status=201)
    assert rec.inflight == 0
    assert series_counts(rec) == {
        ("GET", "/items/{id}", "2xx"): 3,
        ("POST", "/orders", "2xx"): 1,
    }
    stats = rec.window(60)
    assert stats.requests == 4
    assert stats.latency.count == 4
    assert stats.latency.sum == pytest.approx(0.5)
    assert stats.covered == pytest.approx(0.5)
    assert rec.routes() == frozenset({"/items/{id}", "/orders"})
    cell = rec.table.requests[("GET", "/items/{id}", "2xx")].duration
    assert cell.count == 3
    assert cell.sum == pytest.approx(0.3)
    assert cell.cumulative()[-1] == 3


def test_inflight_peak_with_overlapping_requests(rec: Recorder, clock: ManualClock) -> None:
    a = rec.started()
    clock.advance(1)
    b = rec.started()
    clock.advance(1)
    c = rec.started()
    assert rec.inflight == 3
    clock.advance(1)
    rec.finished("GET", "/a", 200, a, clock.monotonic())
    rec.finished("GET", "/a", 200, b, clock.monotonic())
    d = rec.started()  # a later request never raises the peak beyond the real overlap
    rec.finished("GET", "/a", 200, c, clock.monotonic())
    clock.advance(1)
    rec.finished("GET", "/a", 200, d, clock.monotonic())
    assert rec.inflight == 0
    assert rec.window(60).inflight_peak == 3
    clock.advance(10)
    rec.tick()
    (snap,) = rec.windows.snapshots()
    assert snap.inflight_peak == 3
    assert snap.requests == 4


def test_busy_seconds_count_overlap_once(rec: Recorder, clock: ManualClock) -> None:
    a = rec.started()  # 0
    clock.advance(1)
    b = rec.started()  # 1
    clock.advance(2)
    rec.finished("GET", "/a", 200, a, clock.monotonic())  # 3
    clock.advance(1)
    rec.finished("GET", "/a", 200, b, clock.monotonic())  # 4
    assert rec.table.counters["busy_seconds"] == 4.0
    assert rec.window(60).busy_seconds == 4.0
    # Latencies add up to 6 s: that is Little's law, not busy time.
    assert rec.window(60).latency.sum == 6.0
    clock.advance(2)
    serve(rec, clock, 1.0)  # 6..7, after an idle second
    assert rec.table.counters["busy_seconds"] == 5.0
    assert rec.window(60).busy_ratio == pytest.approx(5.0 / 7.0)


def test_busy_time_is_split_across_a_slot_boundary(rec: Recorder, clock: ManualClock) -> None:
    clock.advance(8)
    serve(rec, clock, 4.0)  # 8..12 crosses the slot edge at 10
    (closed,) = rec.windows.snapshots()
    assert closed.busy_seconds == 2.0
    assert closed.inflight_peak == 1
    assert closed.requests == 0  # the request finished in the next slot
    assert rec.windows.current.busy_seconds == 2.0
    assert rec.windows.current.inflight_peak == 1
    assert rec.table.counters["busy_seconds"] == 4.0


def test_busy_time_split_by_ticks_while_a_request_runs(rec: Recorder, clock: ManualClock) -> None:
    clock.advance(5)
    start = rec.started()
    for _ in range(30):  # the background ticker runs once a second
        clock.advance(1)
        rec.tick()
    rec.finished("GET", "/slow", 200, start, clock.monotonic())  # 5..35
    clock.advance(10)
    rec.tick()
    snaps = rec.windows.snapshots()
    assert starts(snaps) == [0.0, 10.0, 20.0, 30.0]
    assert [s.busy_seconds for s in snaps] == [5.0, 10.0, 10.0, 5.0]
    assert [s.inflight_peak for s in snaps] == [1, 1, 1, 1]
    assert rec.table.counters["busy_seconds"] == 30.0


def test_busy_time_split_across_several_slots_without_ticks(
    rec: Recorder, clock: ManualClock
) -> None:
    clock.advance(5)
    serve(rec, clock, 30.0)  # 5..35
    clock.advance(10)
    rec.tick()
    snaps = rec.windows.snapshots()
    assert starts(snaps) == [0.0, 10.0, 20.0, 30.0]
    assert [s.busy_seconds for s in snaps] == [5.0, 10.0, 10.0, 5.0]


def test_route_cap_sends_new_routes_to_other(rec: Recorder, clock: ManualClock) -> None:
    for i in range(10_000):
        start = rec.started()
        rec.finished("GET", f"/page/{i}", 200, start, start + 0.001)
    assert len(rec.routes()) <= CAP
    assert rec.routes() == frozenset({"/page/0", "/page/1", "/page/2"})
    assert rec.table.counters["route_overflow"] == 10_000 - CAP
    counts = series_counts(rec)
    assert counts[("GET", OVERFLOW_ROUTE, "2xx")] == 10_000 - CAP
    assert len(counts) == CAP + 1
    # A route admitted before the cap keeps its own label.
    start = rec.started()
    rec.finished("GET", "/page/1", 200, start, start + 0.001)
    assert series_counts(rec)[("GET", "/page/1", "2xx")] == 2
    assert rec.table.counters["route_overflow"] == 10_000 - CAP
    assert set(rec.windows.current.routes) == {
        "GET /page/0",
        "GET /page/1",
        "GET /page/2",
        f"GET {OVERFLOW_ROUTE}",
    }


def test_unknown_method_becomes_other(rec: Recorder, clock: ManualClock) -> None:
    serve(rec, clock, 0.01, method="PROPFIND", route="/dav")
    serve(rec, clock, 0.01, method="PROPFIND", route="/dav")
    serve(rec, clock, 0.01, method="DELETE", route="/dav")
    assert series_counts(rec) == {("OTHER", "/dav", "2xx"): 2, ("DELETE", "/dav", "2xx"): 1}
    assert set(rec.windows.current.routes) == {"OTHER /dav", "DELETE /dav"}


def test_status_classes_and_error_counts(rec: Recorder, clock: ManualClock) -> None:
    for status in (200, 204, 301, 404, 422, 500, 503, 99, 700):
        serve(rec, clock, 0.01, status=status)
    counts = series_counts(rec)
    route = "/items/{id}"
    assert counts == {
        ("GET", route, "2xx"): 2,
        ("GET", route, "3xx"): 1,
        ("GET", route, "4xx"): 2,
        ("GET", route, "5xx"): 3,
        ("GET", route, "0xx"): 1,
    }
    stats = rec.window(60)
    assert stats.requests == 9
    assert stats.errors == 3  # 500, 503 and the out-of-range 700
    assert stats.client_errors == 2
    assert stats.error_rate == pytest.approx(3 / 9)


def test_ttfb_queue_and_disconnects_are_recorded(rec: Recorder, clock: ManualClock) -> None:
    serve(rec, clock, 0.2, ttfb=0.05, queue=0.003)
    serve(rec, clock, 0.1, ttfb=0.02, disconnected=True)
    serve(rec, clock, 0.1)
    stats = rec.window(60)
    # every request has a TTFB; the one sent in one piece got its first byte at the end
    assert stats.ttfb.count == 3
    assert stats.ttfb.quantiles([0.0, 0.5]) == [0.02, pytest.approx(0.05, rel=0.01)]
    assert stats.ttfb.max == pytest.approx(0.1, rel=0.021)
    assert stats.queue_time.count == 1
    assert stats.queue_time.max == 0.003
    assert stats.disconnects == 1
    assert rec.table.ttfb.count == 2  # the streamed ones; ttfb_all() adds the rest
    assert rec.table.ttfb.sum == pytest.approx(0.07)
    assert rec.table.ttfb_all().count == 3
    assert rec.table.ttfb_all().sum == pytest.approx(0.17)
    assert rec.table.queue_time.count == 1
    assert rec.table.counters["disconnects"] == 1


def test_count_bumps_process_counters(rec: Recorder) -> None:
    rec.count("exceptions")
    rec.count("exceptions", 2)
    rec.count("custom")
    assert rec.table.counters["exceptions"] == 3
    assert rec.table.counters["custom"] == 1


def test_tick_closes_idle_intervals_into_the_ring(rec: Recorder, clock: ManualClock) -> None:
    serve(rec, clock, 0.5)
    clock.advance(3)
    rec.tick()
    assert rec.windows.snapshots() == []  # still inside the first interval
    clock.advance(41.5)  # now 45 s
    rec.tick()
    snaps = rec.windows.snapshots()
    assert starts(snaps) == [0.0, 10.0, 20.0, 30.0]
    assert [s.requests for s in snaps] == [1, 0, 0, 0]
    assert [s.inflight_peak for s in snaps] == [1, 0, 0, 0]
    assert [s.worker for s in snaps] == [7] * 4
    assert rec.windows.current.start == WALL_START + 40.0
    assert rec.now() == WALL_START + 45.0
    stats = rec.window(60)
    assert stats.requests == 1
    assert stats.covered == 45.0
    # Much later the ring stays bounded by history / interval.
    clock.advance(3 * 3600)
    rec.tick()
    assert len(rec.windows.snapshots()) == 90
    assert rec.window(60).requests == 0


def test_recent_carries_gauges_into_the_partial_snapshot(rec: Recorder, clock: ManualClock) -> None:
    rec.gauges["rss_bytes"] = 5e6
    serve(rec, clock, 0.25)
    (partial,) = rec.recent(60)
    assert partial.gauges == {"rss_bytes": 5e6}
    assert partial.seconds == 0.25
    assert partial.requests == 1


def test_idle_intervals_before_a_new_request_have_no_peak(
    rec: Recorder, clock: ManualClock
) -> None:
    serve(rec, clock, 1.0)
    clock.advance(34)  # 35 s: the next request opens slot 30 after two idle slots
    start = rec.started()
    rec.finished("GET", "/a", 200, start, start + 0.1)
    snaps = rec.windows.snapshots()
    assert starts(snaps) == [0.0, 10.0, 20.0]
    assert [s.inflight_peak for s in snaps] == [1, 0, 0]


def test_snapshot_listeners_see_every_closed_interval(rec: Recorder, clock: ManualClock) -> None:
    seen: list[IntervalSnapshot] = []
    rec.snapshot_listeners.append(seen.append)
    serve(rec, clock, 1.0)
    clock.advance(40)
    rec.tick()
    assert starts(seen) == [0.0, 10.0, 20.0, 30.0]
    assert [s.requests for s in seen] == [1, 0, 0, 0]


def test_snapshot_listeners_get_each_interval_with_regular_ticks(
    rec: Recorder, clock: ManualClock
) -> None:
    seen: list[IntervalSnapshot] = []
    rec.snapshot_listeners.append(seen.append)
    serve(rec, clock, 1.0)
    for _ in range(30):
        clock.advance(1)
        rec.tick()
    assert starts(seen) == [0.0, 10.0, 20.0]
    assert [s.requests for s in seen] == [1, 0, 0]


def test_interleaved_routes_and_statuses_fold_into_their_own_series(
    rec: Recorder, clock: ManualClock
) -> None:
    # One batch, folded grouped by (method, route, status): each request must land in its series.
    for method, route, status, seconds in (
        ("GET", "/a", 200, 0.01), ("POST", "/b", 500, 0.02), ("GET", "/a", 500, 0.03),
        ("GET", "/a", 201, 0.04), ("POST", "/b", 500, 0.05),
    ):  # fmt: skip
        serve(rec, clock, seconds, method=method, route=route, status=status)
    assert series_counts(rec) == {
        ("GET", "/a", "2xx"): 2, ("GET", "/a", "5xx"): 1, ("POST", "/b", "5xx"): 2,
    }  # fmt: skip
    sums = {labels: s.duration.sum for labels, s in rec.table.requests.items()}
    assert sums[("GET", "/a", "2xx")] == pytest.approx(0.05)
    assert sums[("POST", "/b", "5xx")] == pytest.approx(0.07)
    assert rec.window(60).errors == 3
