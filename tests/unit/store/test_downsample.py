"""Downsampling: totals stay exact, peaks take the maximum, gauges average, routes merge; the
fast histogram paths give exactly what the histogram's own API gives."""

from __future__ import annotations

import math
import random
import struct

import pytest

from scalewise.errors import HistogramError
from scalewise.metrics.histogram import EMPTY, FrozenHistogram, Histogram, merge_all
from scalewise.metrics.windows import IntervalSnapshot, RouteSnapshot
from scalewise.store.downsample import (
    bucket_start,
    decode_histogram,
    downsample,
    merge_blobs,
    merge_gauges,
    merge_histograms,
    merge_routes,
    merge_rows,
    merge_snapshots,
    row_snapshot,
    snapshot_row,
    totals,
)

QS = (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def frozen(*values: float) -> FrozenHistogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h.freeze()


def random_hist(rng: random.Random, n: int, sigma: float = 1.0) -> FrozenHistogram:
    return frozen(*(rng.lognormvariate(-3, sigma) for _ in range(n)))


def snap(
    start: float,
    *,
    worker: int = 0,
    latencies: tuple[float, ...] = (0.01, 0.02),
    peak: int = 1,
    busy: float = 1.0,
    gauges: dict[str, float] | None = None,
    seconds: float = 10.0,
) -> IntervalSnapshot:
    latency = frozen(*latencies)
    return IntervalSnapshot(
        start=start,
        seconds=seconds,
        requests=len(latencies),
        errors=1,
        client_errors=2,
        disconnects=1,
        inflight_peak=peak,
        busy_seconds=busy,
        latency=latency,
        ttfb=frozen(*(v / 2 for v in latencies)),
        routes={"GET /": RouteSnapshot(len(latencies), 1, 2, latency)},
        gauges={"cpu_percent": 50.0} if gauges is None else gauges,
        worker=worker,
    )


def layout(h: Histogram) -> tuple[object, ...]:
    """Everything observable about a histogram, bucket by bucket."""
    return (list(h.buckets()), h.count, h.sum, h.min, h.max, h.quantiles(QS))


# -- merging snapshots -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "resolution", "start"),
    [
        (125.0, 60.0, 120.0),
        (120.0, 60.0, 120.0),
        (599.9, 600.0, 0.0),
        (1_700_000_007.5, 60, 1_699_999_980),
    ],
)
def test_buckets_align_to_multiples_of_the_resolution(
    t: float, resolution: float, start: float
) -> None:
    assert bucket_start(t, resolution) == start


def test_merge_adds_counts_and_takes_peak_max() -> None:
    parts = [
        snap(60.0, latencies=(0.01, 0.5), peak=3, busy=2.0),
        snap(70.0, latencies=(0.02,), peak=7, busy=4.5),
        snap(80.0, latencies=(), peak=0, busy=0.0),
    ]
    merged = merge_snapshots(parts, 60.0, 60.0)
    assert (merged.start, merged.seconds, merged.worker) == (60.0, 60.0, 0)
    assert merged.requests == 3
    assert (merged.errors, merged.client_errors, merged.disconnects) == (3, 6, 3)
    assert merged.inflight_peak == 7
    assert merged.busy_seconds == pytest.approx(6.5)
    assert layout(merged.latency) == layout(merge_all(p.latency for p in parts))
    assert layout(merged.ttfb) == layout(merge_all(p.ttfb for p in parts))
    assert merged.queue_time is EMPTY


def test_gauges_average_weighted_by_seconds() -> None:
    parts = [
        snap(0.0, gauges={"cpu_percent": 10.0, "rss_bytes": 100.0}, seconds=10.0),
        snap(10.0, gauges={"cpu_percent": 40.0}, seconds=5.0),
        snap(20.0, gauges={}),
    ]
    assert merge_gauges(parts) == {"cpu_percent": pytest.approx(20.0), "rss_bytes": 100.0}
    assert merge_gauges([snap(0.0, gauges={"x": 1.0}, seconds=0.0)]) == {"x": 1.0}
    assert merge_gauges([]) == {}


def test_routes_merge_route_by_route() -> None:
    a = IntervalSnapshot(
        start=0.0,
        seconds=10.0,
        routes={
            "GET /a": RouteSnapshot(2, 1, 0, frozen(0.1, 0.2)),
            "GET /b": RouteSnapshot(1, 0, 1, frozen(0.3)),
        },
    )
    b = IntervalSnapshot(
        start=10.0, seconds=10.0, routes={"GET /a": RouteSnapshot(1, 0, 0, frozen(0.4))}
    )
    routes = merge_routes([a, b])
    assert set(routes) == {"GET /a", "GET /b"}
    assert (routes["GET /a"].requests, routes["GET /a"].errors) == (3, 1)
    assert layout(routes["GET /a"].latency) == layout(frozen(0.1, 0.2, 0.4))
    assert routes["GET /b"] == a.routes["GET /b"]


def test_merge_refuses_mixed_workers_and_nothing() -> None:
    with pytest.raises(ValueError, match="different workers"):
        merge_snapshots([snap(0.0), snap(10.0, worker=1)], 0.0, 60.0)
    with pytest.raises(ValueError, match="at least one"):
        merge_snapshots([], 0.0, 60.0)


def test_a_long_interval_keeps_its_length() -> None:
    merged = merge_snapshots([snap(0.0, seconds=120.0)], 0.0, 60.0)
    assert merged.seconds == 120.0


def test_downsample_groups_per_worker_and_bucket_and_keeps_totals() -> None:
    rng = random.Random(7)
    fine = [
        snap(float(t), worker=w, latencies=tuple(rng.random() for _ in range(rng.randint(0, 9))))
        for w in (0, 1)
        for t in range(0, 600, 10)
    ]
    rng.shuffle(fine)
    coarse = downsample(fine, 60.0)
    assert [(s.start, s.worker) for s in coarse] == [
        (float(t), w) for t in range(0, 600, 60) for w in (0, 1)
    ]
    assert totals(coarse) == totals(fine)
    all_coarse, all_fine = merge_all(s.latency for s in coarse), merge_all(s.latency for s in fine)
    assert all_coarse == all_fine  # the sums differ only in float rounding (order of addition)
    assert all_coarse.quantiles(QS) == all_fine.quantiles(QS)
    twice = downsample(coarse, 600.0)
    assert len(twice) == 2
    assert totals(twice) == totals(fine)


def test_downsample_rejects_a_bad_resolution() -> None:
    with pytest.raises(ValueError, match="resolution"):
        downsample([snap(0.0)], 0)


def test_downsample_example_in_the_docstring() -> None:
    fine = [IntervalSnapshot(start=t, seconds=10, requests=2) for t in range(0, 120, 10)]
    assert [(s.start, s.seconds, s.requests) for s in downsample(fine, 60)] == [
        (0, 60, 12),
        (60, 60, 12),
    ]


# -- fast histogram paths --------------------------------------------------------------------


def _cases() -> list[Histogram]:
    rng = random.Random(11)
    wide = random_hist(rng, 500, 3.0).copy()
    wide.record(0.0)  # zero bucket
    wide.record(7200.0)  # overflow bucket
    many = Histogram()
    many.record_many(0.05, 100_000)  # multi-byte counts
    many.record_many(2.0, 300)  # a gap of more than 127 buckets
    return [frozen(0.001), random_hist(rng, 5), random_hist(rng, 50), wide, many, frozen(0.0)]


@pytest.mark.parametrize("hist", _cases())
def test_decode_matches_from_bytes_then_freeze(hist: Histogram) -> None:
    blob = hist.to_bytes()
    fast = decode_histogram(blob)
    slow = Histogram.from_bytes(blob).freeze()
    assert isinstance(fast, FrozenHistogram)
    assert layout(fast) == layout(slow)
    assert fast == slow
    assert fast.to_bytes() == blob
    assert (fast._lo, fast._counts) == (slow._lo, slow._counts)  # the same trimmed span


def test_decode_of_nothing_and_of_an_empty_histogram() -> None:
    assert decode_histogram(None) is EMPTY
    assert decode_histogram(Histogram().to_bytes()) == EMPTY


def test_decode_of_bad_bytes_is_a_histogram_error() -> None:
    blob = frozen(0.1, 0.2).to_bytes()
    with pytest.raises(HistogramError):
        decode_histogram(blob[:10])
    with pytest.raises(HistogramError):
        decode_histogram(b"\x07" + blob[1:])  # another format version
    with pytest.raises(HistogramError):
        decode_histogram(blob[:-1] + b"\x05")  # counts no longer match the header
    with pytest.raises(HistogramError):
        decode_histogram(blob + b"\x7f\x01")  # a bucket past the layout
    header = struct.calcsize("<BdddQ")
    with pytest.raises(HistogramError):
        decode_histogram(blob[: header + 1] + b"\x81")  # a truncated varint


def test_merge_histograms_matches_merge_then_freeze() -> None:
    cases = _cases()
    fast = merge_histograms(cases)
    slow = merge_all(cases).freeze()
    assert layout(fast) == layout(slow)
    assert (fast._lo, fast._counts) == (slow._lo, slow._counts)
    assert math.isclose(fast.sum, slow.sum, rel_tol=0, abs_tol=0)


def test_merge_histograms_edge_cases() -> None:
    one = frozen(0.1, 0.2)
    assert merge_histograms([]) is EMPTY
    assert merge_histograms([EMPTY, Histogram()]) is EMPTY
    assert merge_histograms([EMPTY, one]) is one
    live = Histogram()
    live.record(0.3)
    mixed = merge_histograms([one, live])
    assert isinstance(mixed, FrozenHistogram)
    assert layout(mixed) == layout(frozen(0.1, 0.2, 0.3))


# -- stored rows -------------------------------------------------------------------------------


def _busy_snapshots(rng: random.Random, start: float, count: int) -> list[IntervalSnapshot]:
    """Varied snapshots: routes that come and go, idle intervals, a zero-length one."""
    snaps = []
    for i in range(count):
        routes = {}
        for name, sigma in (("GET /a", 0.5), ("POST /b", 1.0), ("GET /c", 3.0)):
            n = rng.choice((0, 0, 1, 3, 40, 300))
            if n:
                hist = random_hist(rng, n, sigma)
                routes[name] = RouteSnapshot(n, rng.randint(0, 2), 0, hist)
        latency = merge_all(r.latency for r in routes.values())
        gauges = {"cpu_percent": rng.uniform(0, 100)} if i % 3 else {}
        if i % 2:
            gauges["open_fds"] = rng.randint(10, 50)
        snaps.append(
            IntervalSnapshot(
                start=start + 10 * i,
                seconds=0.0 if i == 1 else 10.0,
                requests=latency.count,
                errors=sum(r.errors for r in routes.values()),
                client_errors=rng.randint(0, 3),
                disconnects=rng.randint(0, 1),
                inflight_peak=rng.randint(0, 20),
                busy_seconds=rng.uniform(0, 10),
                latency=latency.freeze(),
                ttfb=random_hist(rng, rng.choice((0, 5))),
                routes=routes,
                gauges=gauges,
                worker=3,
            )
        )
    return snaps


@pytest.mark.parametrize("seed", range(6))
def test_merge_rows_gives_the_row_of_merge_snapshots(seed: int) -> None:
    rng = random.Random(seed)
    snaps = _busy_snapshots(rng, 600.0, rng.randint(1, 10))
    rows = [snapshot_row("web-1", s, 0.0) for s in snaps]
    expected = snapshot_row("web-1", merge_snapshots(snaps, 600.0, 600.0), 600.0)
    assert merge_rows(rows, 600.0, 600.0) == expected
    assert row_snapshot(expected) == merge_snapshots(snaps, 600.0, 600.0)


def test_rows_round_trip() -> None:
    for snapshot in _busy_snapshots(random.Random(5), 0.0, 8):
        assert row_snapshot(snapshot_row("web-1", snapshot, 0.0)) == snapshot


def test_merge_rows_refuses_mixed_rows_and_nothing() -> None:
    a = snapshot_row("web-1", snap(0.0), 0.0)
    with pytest.raises(ValueError, match="different instances or workers"):
        merge_rows([a, snapshot_row("web-2", snap(10.0), 0.0)], 0.0, 60.0)
    with pytest.raises(ValueError, match="different instances or workers"):
        merge_rows([a, snapshot_row("web-1", snap(10.0, worker=1), 0.0)], 0.0, 60.0)
    with pytest.raises(ValueError, match="at least one"):
        merge_rows([], 0.0, 60.0)


def test_merge_blobs_matches_merge_then_to_bytes() -> None:
    cases = _cases()
    blobs = [h.to_bytes() for h in cases]
    assert merge_blobs(blobs) == merge_all(cases).to_bytes()
    assert merge_blobs([None, blobs[2], EMPTY.to_bytes(), None]) == blobs[2]
    assert merge_blobs([None, None]) is None
    assert merge_blobs([EMPTY.to_bytes(), EMPTY.to_bytes()]) is None
    assert merge_blobs([]) is None


def test_merge_blobs_of_foreign_bytes_is_a_histogram_error() -> None:
    good = frozen(0.1).to_bytes()
    with pytest.raises(HistogramError):
        merge_blobs([good, b"\x09" + good[1:]])
