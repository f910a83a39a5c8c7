"""Rolling windows: slot alignment, roll-over, the bounded ring, window queries, combining."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from scalewise.metrics.histogram import FrozenHistogram, Histogram
from scalewise.metrics.windows import (
    IntervalSnapshot,
    LatencySummary,
    RollingWindows,
    RouteSnapshot,
    Slot,
    combine,
    route_table,
)

GET_ITEM = "GET /items/{id}"
POST_ORDERS = "POST /orders"


def windows(now: float = 1000.0) -> RollingWindows:
    return RollingWindows(interval=10, history=900, now=now)


def frozen(*values: float) -> FrozenHistogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h.freeze()


def snapshot(
    start: float,
    worker: int,
    *,
    peak: int = 0,
    busy: float = 0.0,
    latencies: tuple[float, ...] = (),
    errors: int = 0,
) -> IntervalSnapshot:
    return IntervalSnapshot(
        start=start,
        seconds=10.0,
        requests=len(latencies),
        errors=errors,
        inflight_peak=peak,
        busy_seconds=busy,
        latency=frozen(*latencies),
        worker=worker,
    )


# -- slots -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "start"),
    [(1000.0, 1000.0), (1003.0, 1000.0), (1009.999, 1000.0), (1234.5, 1230.0), (0.0, 0.0)],
)
def test_slots_align_to_multiples_of_the_interval(now: float, start: float) -> None:
    w = windows(now)
    assert w.current.start == start
    assert w.slot_end == start + 10
    assert w.started == now


def test_slot_for_keeps_the_open_slot_until_its_end() -> None:
    w = windows(1003.0)
    slot = w.slot_for(1004.0)
    assert slot is w.current
    assert w.slot_for(1009.999) is slot
    assert w.snapshots() == []
    later = w.slot_for(1010.0)
    assert later is not slot
    assert later.start == 1010.0
    assert w.slot_for(1257.3).start == 1250.0


def test_roll_over_closes_the_slot_into_a_snapshot_with_the_right_counts() -> None:
    w = windows(1000.0)
    slot = w.slot_for(1001.0)
    for status in (200, 201, 302, 404, 429, 499, 500, 503, 599):
        slot.add(GET_ITEM, status, 0.1)
    slot.add(POST_ORDERS, 201, 0.5)
    slot.disconnects += 1
    slot.inflight_peak = 4
    slot.busy_seconds = 2.5
    slot.ttfb.record(0.01)  # one of the 0.5 s responses was streamed
    slot.streamed.record(0.5)
    slot.queue_time.record(0.002)
    w.slot_for(1012.0, gauges={"rss_bytes": 1e6})

    (snap,) = w.snapshots()
    assert snap.start == 1000.0
    assert snap.seconds == 10.0
    assert snap.end == 1010.0
    assert snap.requests == 10
    assert snap.errors == 3
    assert snap.client_errors == 3
    assert snap.disconnects == 1
    assert snap.inflight_peak == 4
    assert snap.busy_seconds == 2.5
    assert snap.latency.count == 10
    assert math.isclose(snap.latency.sum, 9 * 0.1 + 0.5)
    assert snap.ttfb.count == 10  # every request; one-piece responses at their latency
    assert snap.ttfb.quantile(0) == 0.01
    assert snap.queue_time.count == 1
    assert snap.gauges == {"rss_bytes": 1e6}
    assert set(snap.routes) == {GET_ITEM, POST_ORDERS}
    item = snap.routes[GET_ITEM]
    assert (item.requests, item.errors, item.client_errors) == (9, 3, 3)
    assert item.latency.count == 9
    assert snap.routes[POST_ORDERS] == RouteSnapshot(1, 0, 0, frozen(0.5))
    # The new slot starts clean.
    assert w.current.start == 1010.0
    assert w.current.routes == {}
    assert w.current.errors == 0


def test_idle_gaps_produce_empty_snapshots() -> None:
    w = windows(1000.0)
    w.slot_for(1001.0).add(GET_ITEM, 200, 0.05)
    w.slot_for(1045.0).add(GET_ITEM, 200, 0.05)
    snaps = w.snapshots()
    assert [s.start for s in snaps] == [1000.0, 1010.0, 1020.0, 1030.0]
    assert [s.requests for s in snaps] == [1, 0, 0, 0]
    for idle in snaps[1:]:
        assert idle.seconds == 10.0
        assert idle.latency.count == 0
        assert idle.routes == {}
        assert idle.inflight_peak == 0
        assert idle.busy_seconds == 0.0
    assert w.current.start == 1040.0
    assert w.snapshots(since=1020.0) == snaps[2:]


def test_ring_is_bounded_after_hours_of_simulated_time() -> None:
    w = windows(1000.0)
    maxlen = 900 // 10
    t = 1000.0
    while t < 1000.0 + 3 * 3600:
        w.slot_for(t).add(GET_ITEM, 200, 0.01)
        t += 7.0
    snaps = w.snapshots()
    assert len(snaps) == maxlen
    starts = [s.start for s in snaps]
    assert starts == [w.current.start - 10.0 * (maxlen - i) for i in range(maxlen)]
    assert all(s.start % 10 == 0 for s in snaps)
    # A day of silence does not loop over every idle interval, nor grow the ring.
    w.slot_for(t + 86_400.0)
    snaps = w.snapshots()
    assert len(snaps) == maxlen
    assert all(s.requests == 0 for s in snaps)
    assert snaps[-1].end == w.current.start
    assert [b.start - a.start for a, b in itertools.pairwise(snaps)] == [10.0] * (maxlen - 1)


# -- window queries ----------------------------------------------------------------------


def filled(per_slot: int = 10) -> RollingWindows:
    """Slots 1000..1090 where slot ``k`` (start 1000 + 10k) holds k + 1 requests of 0.1 s."""
    w = windows(1000.0)
    for k in range(per_slot):
        start = 1000.0 + 10 * k
        slot = w.slot_for(start + 1)
        for _ in range(k + 1):
            slot.add(GET_ITEM, 200, 0.1)
    return w


def test_window_counts_only_the_last_whole_slots_and_the_open_part() -> None:
    w = filled()
    assert w.current.start == 1090.0
    stats = w.window(60, now=1095.0)
    # Closed slots 1030..1080 (k = 3..8) plus the open slot 1090 (k = 9).
    assert stats.requests == sum(k + 1 for k in range(3, 10))
    assert stats.seconds == 60
    assert stats.covered == 65.0
    assert w.window_start(60, 1095.0) == 1030.0
    recent = w.recent(60, now=1095.0)
    assert [s.start for s in recent] == [1030.0 + 10 * i for i in range(7)]
    assert recent[-1].seconds == 5.0  # the open slot's partial view
    assert recent[-1].requests == 10


def test_covered_at_start_up_is_shorter_than_the_window() -> None:
    w = windows(1003.0)
    assert w.covered(60, 1003.0) == 0.0
    stats = w.window(60, now=1003.0)
    assert stats.covered == 0.0
    assert stats.rps == 0.0
    assert stats.avg_concurrency == 0.0
    assert stats.busy_ratio == 0.0
    w.slot_for(1005.0).add(GET_ITEM, 200, 0.2)
    stats = w.window(60, now=1008.0)
    assert stats.covered == 5.0
    assert stats.requests == 1
    assert stats.rps == pytest.approx(0.2)
    # After the first slots closed: still measured from start-up until the window fills.
    w.slot_for(1031.0)
    assert w.covered(60, 1035.0) == 32.0
    assert w.covered(60, 1095.0) == 65.0
    assert w.window(60, now=1095.0).covered == 65.0


def test_rates_and_littles_law_on_a_constructed_example() -> None:
    w = windows(1000.0)
    first = w.slot_for(1000.0)
    for status in [200] * 7 + [500, 503, 404]:
        first.add(GET_ITEM, status, 0.5)
    first.busy_seconds = 4.0
    first.inflight_peak = 2
    second = w.slot_for(1010.0)
    for _ in range(10):
        second.add(POST_ORDERS, 200, 0.5)
    second.busy_seconds = 5.0
    second.inflight_peak = 3
    w.slot_for(1020.0)

    stats = w.window(60, now=1020.0)
    assert stats.covered == 20.0
    assert stats.requests == 20
    assert stats.errors == 2
    assert stats.client_errors == 1
    assert stats.rps == 1.0
    assert stats.error_rate == 0.1
    # 20 requests × 0.5 s over 20 s of wall time: on average half a request in flight.
    assert stats.latency.sum == 10.0
    assert stats.avg_concurrency == 0.5
    assert stats.busy_seconds == 9.0
    assert stats.busy_ratio == 0.45
    assert stats.inflight_peak == 3
    assert stats.quantile(0.5) == pytest.approx(0.5, rel=0.01)


def test_window_stats_with_no_requests() -> None:
    w = windows(1000.0)
    stats = w.window(60, now=1030.0)
    assert stats.requests == 0
    assert stats.error_rate == 0.0
    assert stats.quantile(0.99) == 0.0


def test_window_excludes_a_stale_open_slot() -> None:
    w = windows(1000.0)
    w.slot_for(1001.0).add(GET_ITEM, 200, 0.05)
    assert w.window(60, now=1200.0).requests == 0


# -- snapshots on the wire ---------------------------------------------------------------


def closed_snapshot() -> IntervalSnapshot:
    slot = Slot(1000.0, 10.0)
    slot.add(GET_ITEM, 200, 0.012)
    slot.add(GET_ITEM, 503, 1.5)
    slot.add(POST_ORDERS, 404, 0.003)
    slot.add(POST_ORDERS, 200, 0.0)
    slot.ttfb.record(0.004)
    slot.queue_time.record(0.25)
    slot.disconnects = 2
    slot.inflight_peak = 3
    slot.busy_seconds = 1.75
    return slot.close({"rss_bytes": 123456.0, "cpu_percent": 12.5}, worker=4242)


def test_interval_snapshot_dict_round_trip_through_json() -> None:
    snap = closed_snapshot()
    data = snap.to_dict()
    text = json.dumps(data)
    back = IntervalSnapshot.from_dict(json.loads(text))
    assert back == snap
    assert back.worker == 4242
    assert back.routes[GET_ITEM].errors == 1
    assert back.routes[POST_ORDERS].client_errors == 1
    assert back.latency.quantiles((0.5, 0.99)) == snap.latency.quantiles((0.5, 0.99))
    assert back.to_dict() == data


def test_empty_snapshot_round_trip() -> None:
    snap = IntervalSnapshot(start=1010.0, seconds=10.0)
    back = IntervalSnapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert back == snap
    assert back.latency.count == 0


def test_slot_close_with_now_gives_a_partial_view() -> None:
    slot = Slot(1000.0, 10.0)
    slot.add(GET_ITEM, 200, 0.1)
    assert slot.close({}, 0, now=1003.5).seconds == 3.5
    assert slot.close({}, 0, now=999.0).seconds == 0.0
    assert slot.close({}, 0, now=1050.0).seconds == 10.0
    # Closing for a view does not reset the slot.
    assert slot.close({}, 0).requests == 1


# -- combining ---------------------------------------------------------------------------


def test_combine_adds_peaks_per_interval_and_averages_busy_time_per_worker() -> None:
    snaps = [
        snapshot(1000.0, 1, peak=3, busy=6.0, latencies=(0.1, 0.2)),
        snapshot(1010.0, 1, peak=1, busy=2.0, latencies=(0.3,), errors=1),
        snapshot(1000.0, 2, peak=2, busy=4.0, latencies=(0.4,)),
        snapshot(1010.0, 2, peak=5, busy=8.0, latencies=(0.5, 0.6)),
    ]
    stats = combine(snaps, seconds=60, covered=20.0)
    # Side by side: 3+2 at 1000, 1+5 at 1010; the window's peak is the larger sum.
    assert stats.inflight_peak == 6
    assert stats.busy_seconds == (6 + 2 + 4 + 8) / 2
    assert stats.requests == 6
    assert stats.errors == 1
    assert stats.latency.count == 6
    assert stats.latency.max == 0.6
    assert stats.rps == 6 / 20


def test_combine_of_one_worker_and_of_nothing() -> None:
    one = combine([snapshot(1000.0, 7, peak=2, busy=3.0), snapshot(1010.0, 7, busy=1.0)], 60, 20)
    assert one.busy_seconds == 4.0
    assert one.inflight_peak == 2
    empty = combine([], 60, 0.0)
    assert empty.requests == 0
    assert empty.inflight_peak == 0
    assert empty.busy_seconds == 0.0


def route_snapshot(
    start: float, routes: dict[str, tuple[int, tuple[float, ...]]]
) -> IntervalSnapshot:
    return IntervalSnapshot(
        start=start,
        seconds=10.0,
        routes={
            name: RouteSnapshot(len(lat), errors, 0, frozen(*lat))
            for name, (errors, lat) in routes.items()
        },
    )


def test_route_table_orders_by_total_time_and_caps_at_top() -> None:
    snaps = [
        route_snapshot(
            1000.0,
            {
                "GET /fast": (0, (0.001,) * 50),  # 0.05 s in total
                "GET /slow": (1, (2.0,)),  # 2 s
                "POST /medium": (0, (0.1,) * 5),  # 0.5 s
            },
        ),
        route_snapshot(
            1010.0,
            {"GET /slow": (0, (2.0,)), "DELETE /tiny": (0, (0.0001,))},
        ),
    ]
    table = route_table(snaps, covered=20.0, top=3)
    assert [(r["method"], r["route"]) for r in table] == [
        ("GET", "/slow"),
        ("POST", "/medium"),
        ("GET", "/fast"),
    ]
    slow = table[0]
    assert slow["requests"] == 2
    assert slow["rps"] == 0.1
    assert slow["error_rate"] == 0.5
    assert slow["client_error_rate"] == 0.0
    assert slow["latency"] == LatencySummary.of(frozen(2.0, 2.0)).to_dict()
    assert slow["latency"]["max"] == 2.0
    total = 4.0 + 0.5 + 0.05 + 0.0001
    assert slow["time_share"] == round(4.0 / total, 4)
    assert table[2]["requests"] == 50
    assert len(route_table(snaps, covered=20.0, top=1)) == 1
    assert route_table(snaps, covered=20.0, top=0) == []
    assert len(route_table(snaps, covered=20.0, top=100)) == 4
    assert route_table([], covered=0.0, top=10) == []
    assert route_table(snaps, covered=0.0, top=1)[0]["rps"] == 0.0
