"""The results model: what the recorder counts, its intervals, bounded memory, and merging."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from scalewise.errors import LoadTestError
from scalewise.loadtest.results import (
    OTHER_NAME,
    IntervalStats,
    ResultRecorder,
    RunResult,
    ThresholdOutcome,
    _record_all,
    merge,
)
from scalewise.metrics.histogram import Histogram

ORIGIN = 1000.0  # a perf_counter reading; offsets below are relative to it


def _req(
    rec: ResultRecorder,
    at: float,
    *,
    name: str = "home",
    status: int = 200,
    error: str | None = None,
    lag: float = 0.0,
    connect: float = 0.0,
    wait: float = 0.010,
    rest: float = 0.002,
    received: int = 1000,
    sent: int = 100,
) -> None:
    """One request intended at ``ORIGIN + at``: sent ``lag`` later, then connect, TTFB, body."""
    intended = ORIGIN + at
    started = intended + lag
    connected = started + connect
    first = connected + wait
    ended = first + rest
    failed = error is not None or status >= 400
    rec.record(
        name, status, error, failed, intended, started, connected, first, ended, received, sent
    )


def test_each_phase_lands_in_its_own_trend() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    _req(rec, 0.1, lag=0.050, connect=0.003, wait=0.020, rest=0.005)
    totals = rec.totals(ORIGIN + 0.5)
    assert totals.requests == 1
    assert totals.trend("http_req_duration").max == pytest.approx(0.078)
    assert totals.trend("http_req_service").max == pytest.approx(0.028)
    assert totals.trend("send_lag").max == pytest.approx(0.050)
    assert totals.trend("http_req_connecting").max == pytest.approx(0.003)
    assert totals.trend("http_req_waiting").max == pytest.approx(0.020)
    assert (totals.received, totals.sent, totals.elapsed) == (1000, 100, pytest.approx(0.5))


def test_record_all_matches_histogram_record() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1.5) for _ in range(5000)] + [0.0, 5e-7, 4000.0]
    inline, reference = Histogram(), Histogram()
    _record_all(inline, values)
    for v in values:
        reference.record(v)
    assert inline == reference


def test_negative_or_nan_durations_count_as_zero() -> None:
    hist = Histogram()
    _record_all(hist, [-0.001, math.nan, 0.5])
    assert hist.count == 3
    assert hist.min == 0.0
    assert hist.sum == pytest.approx(0.5)


def test_statuses_errors_and_failed_rate() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    for i in range(6):
        _req(rec, i * 0.01)
    _req(rec, 0.1, status=404)
    _req(rec, 0.1, status=503)
    _req(rec, 0.1, status=0, error="timeout")
    _req(rec, 0.1, status=0, error="weird")
    totals = rec.totals(ORIGIN + 1)
    assert totals.statuses == {200: 6, 404: 1, 503: 1, 0: 2}
    assert totals.errors == {"4xx": 1, "5xx": 1, "timeout": 1, "other": 1}
    assert totals.failed == 4
    assert totals.failed_rate == pytest.approx(0.4)
    assert totals.rps == pytest.approx(10.0)


def test_roll_closes_intervals_on_boundaries() -> None:
    rec = ResultRecorder(origin=ORIGIN, interval=1.0)
    _req(rec, 0.2)
    assert rec.roll(ORIGIN + 0.9) is None
    first = rec.roll(ORIGIN + 1.02)
    assert first is not None
    assert (first.start, first.width, first.requests) == (0.0, 1.0, 1)
    _req(rec, 1.5)
    _req(rec, 1.6)
    second = rec.roll(ORIGIN + 2.0)
    assert second is not None
    assert (second.start, second.requests, second.rps) == (1.0, 2, 2.0)
    assert rec.roll(ORIGIN + 2.5) is None


def test_a_stalled_loop_leaves_empty_intervals_not_a_hole() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    _req(rec, 0.5)
    closed = rec.roll(ORIGIN + 4.2)
    assert closed is not None
    assert closed.requests == 1
    assert [iv.start for iv in rec.series] == [0.0, 1.0, 2.0, 3.0]
    assert [iv.requests for iv in rec.series] == [1, 0, 0, 0]


def test_result_closes_the_partial_last_interval() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    _req(rec, 0.5)
    rec.roll(ORIGIN + 1.0)
    _req(rec, 1.2)
    result = rec.result({"target": "http://127.0.0.1:1/"}, now=ORIGIN + 1.25)
    assert [iv.width for iv in result.series] == [1.0, pytest.approx(0.25)]
    assert result.totals.requests == 2
    assert result.meta == {"duration": pytest.approx(1.25), "target": "http://127.0.0.1:1/"}


def test_names_checks_iterations_dropped_and_vus() -> None:
    rec = ResultRecorder(origin=ORIGIN, max_names=2)
    rec.set_vus(3, 10)
    for name in ("login", "home", "search", "cart"):
        _req(rec, 0.1, name=name, wait=0.1 if name == "login" else 0.01)
    _req(rec, 0.2, name="login", status=500)
    rec.record_check("status is 200", True)
    rec.record_check("status is 200", False)
    rec.record_iteration("browse", 0.25)
    rec.record_dropped(3)
    rec.set_vus(5, 10)
    iv = rec.roll(ORIGIN + 1)
    assert iv is not None
    assert (iv.iterations, iv.dropped, iv.checks_passed, iv.checks_failed) == (1, 3, 1, 1)
    assert (iv.vus, iv.vus_max) == (5, 10)
    totals = rec.totals()
    assert set(totals.names) == {"login", "home", OTHER_NAME}
    assert (totals.names["login"].requests, totals.names["login"].failed) == (2, 1)
    assert totals.names[OTHER_NAME].requests == 2
    assert totals.names["login"].duration.max == pytest.approx(0.102)
    assert totals.checks == {"status is 200": [1, 1]}
    assert totals.scenarios["browse"].requests == 1
    assert (totals.iterations, totals.dropped, totals.vus, totals.vus_max) == (1, 3, 5, 10)


def test_many_names_in_one_batch_are_folded_by_name() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    for i in range(5000):  # crosses the 2,048-request batch twice
        _req(rec, (i % 900) / 1000, name=f"n{i % 3}", status=500 if i % 10 == 0 else 200)
    totals = rec.totals()
    assert sum(s.requests for s in totals.names.values()) == 5000
    assert sum(s.failed for s in totals.names.values()) == 500
    assert totals.trend("http_req_duration").count == 5000


def test_series_memory_is_bounded_by_pairwise_merging() -> None:
    rec = ResultRecorder(origin=ORIGIN, interval=1.0, max_points=8)
    for second in range(40):
        _req(rec, second + 0.5)
        rec.roll(ORIGIN + second + 1)
    series = rec.series
    assert len(series) <= 8
    assert sum(iv.requests for iv in series) == 40
    assert {iv.width for iv in series} <= {4.0, 8.0}
    starts = [iv.start for iv in series]
    assert starts == sorted(starts)
    for a, b in itertools.pairwise(series):  # contiguous
        assert a.end == pytest.approx(b.start)


def test_roll_still_returns_base_width_intervals_after_compaction() -> None:
    rec = ResultRecorder(origin=ORIGIN, interval=1.0, max_points=4)
    widths = []
    for second in range(12):
        _req(rec, second + 0.5)
        iv = rec.roll(ORIGIN + second + 1)
        assert iv is not None
        widths.append(iv.width)
    assert widths == [1.0] * 12


def test_result_round_trips_through_json() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    for i in range(30):
        _req(rec, i / 10, name=f"n{i % 2}", status=200 if i % 7 else 500)
        rec.record_check("ok", i % 7 != 0)
        rec.record_iteration("main", 0.1)
        rec.roll(ORIGIN + i / 10)
    result = rec.result({"started_at": 1.7e9, "segment": "1/2"}, now=ORIGIN + 3.0)
    result.thresholds.append(
        ThresholdOutcome("http_req_duration", "p(95)<500", False, 612.5, (10.0, 70.0), True)
    )
    text = json.dumps(result.to_dict())
    back = RunResult.from_dict(json.loads(text))
    assert back.to_dict() == result.to_dict()
    assert back.totals.trend("http_req_duration") == result.totals.trend("http_req_duration")
    assert back.thresholds[0].worst_window == (10.0, 70.0)


def test_from_dict_rejects_foreign_or_damaged_files() -> None:
    with pytest.raises(LoadTestError, match="not a scalewise"):
        RunResult.from_dict({"version": 99})
    with pytest.raises(LoadTestError, match="damaged"):
        RunResult.from_dict({"version": 1, "totals": {"elapsed": "x"}})


def _run(seed: int, *, share: int = 1, part: int = 0, started_at: float = 1.7e9) -> RunResult:
    """A 10-second run; ``share``/``part`` keep every share-th request, as a segment would."""
    rng = random.Random(seed)
    rec = ResultRecorder(origin=ORIGIN)
    for i in range(2000):
        at = i / 200
        rec.roll(ORIGIN + at)
        wait = rng.lognormvariate(-4, 0.8)
        status = 500 if rng.random() < 0.05 else 200
        if i % share == part:
            _req(rec, at, name=f"n{i % 4}", status=status, wait=wait)
            rec.record_iteration("main", wait)
            rec.record_check("ok", status == 200)
        rec.set_vus(4 // share, 4 // share)
    return rec.result({"started_at": started_at, "segment": f"{part + 1}/{share}"}, now=ORIGIN + 10)


def test_merge_of_two_segments_equals_one_run() -> None:
    whole = _run(1)
    halves = merge([_run(1, share=2, part=0), _run(1, share=2, part=1)])
    a, b = whole.totals, halves.totals
    assert (b.requests, b.failed, b.iterations, b.received, b.sent) == (
        a.requests,
        a.failed,
        a.iterations,
        a.received,
        a.sent,
    )
    assert b.statuses == a.statuses
    assert b.errors == a.errors
    assert b.checks == a.checks
    for metric in ("http_req_duration", "http_req_waiting", "iteration_duration"):
        assert b.trend(metric) == a.trend(metric)
    assert {k: v.requests for k, v in b.names.items()} == {
        k: v.requests for k, v in a.names.items()
    }
    assert [iv.requests for iv in halves.series] == [iv.requests for iv in whole.series]
    assert [iv.vus for iv in halves.series] == [4] * 10  # 2 + 2 VUs at once
    assert halves.meta["segments"] == ["1/2", "2/2"]
    assert halves.meta["duration"] == pytest.approx(10.0)


def test_merge_aligns_series_by_wall_clock_start() -> None:
    early = _run(2, started_at=1.7e9)
    late = _run(3, started_at=1.7e9 + 5.0)
    merged = merge([early, late])
    assert merged.meta["duration"] == pytest.approx(15.0)
    assert len(merged.series) == 15
    counts = [iv.requests for iv in merged.series]
    assert counts[:5] == [200] * 5
    assert counts[5:10] == [400] * 5
    assert counts[10:] == [200] * 5


def test_merge_onto_the_coarser_interval() -> None:
    fine = _run(4)
    coarse = RunResult(fine.meta, fine.totals.copy(), [], interval=2.0)
    coarse.series = [
        a.combine(b, concurrent=False)
        for a, b in zip(fine.series[::2], fine.series[1::2], strict=True)
    ]
    merged = merge([fine, coarse])
    assert merged.interval == 2.0
    assert [iv.start for iv in merged.series] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [iv.requests for iv in merged.series] == [800] * 5


def test_merge_needs_results() -> None:
    with pytest.raises(LoadTestError):
        merge([])


def test_interval_combine_kinds() -> None:
    a = IntervalStats(0.0, 1.0, requests=3, vus=2, vus_max=4, errors={"5xx": 1})
    b = IntervalStats(1.0, 1.0, requests=5, vus=3, vus_max=4, errors={"5xx": 2, "timeout": 1})
    later = a.combine(b, concurrent=False)
    assert (later.start, later.width, later.requests, later.vus, later.vus_max) == (0, 2, 8, 3, 4)
    assert later.errors == {"5xx": 3, "timeout": 1}
    side = a.combine(IntervalStats(0.0, 1.0, requests=5, vus=3, vus_max=4), concurrent=True)
    assert (side.start, side.width, side.requests, side.vus, side.vus_max) == (0, 1, 8, 5, 8)
