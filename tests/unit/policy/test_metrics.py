"""The metric catalog: definitions over snapshots, missing data, workers, and the fast source."""

from __future__ import annotations

import math
import random

import pytest

from scalewise.errors import ConfigError, RuleError
from scalewise.metrics.gauges import GaugeRegistry
from scalewise.metrics.histogram import FrozenHistogram, Histogram
from scalewise.metrics.windows import IntervalSnapshot
from scalewise.policy import metrics
from scalewise.policy.metrics import (
    KINDS,
    METRICS,
    SnapshotSource,
    format_value,
    metric_spec,
    metric_value,
)

T0 = 1_700_000_000.0  # a multiple of 10


def frozen(*values: float) -> FrozenHistogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h.freeze()


def snap(
    start: float,
    *latencies: float,
    worker: int = 0,
    errors: int = 0,
    peak: int = 0,
    busy: float = 0.0,
    queue: tuple[float, ...] = (),
    **gauges: float,
) -> IntervalSnapshot:
    return IntervalSnapshot(
        start=start,
        seconds=10.0,
        requests=len(latencies),
        errors=errors,
        inflight_peak=peak,
        busy_seconds=busy,
        latency=frozen(*latencies),
        queue_time=frozen(*queue),
        gauges={k.replace("__", ":"): v for k, v in gauges.items()},
        worker=worker,
    )


# -- the catalog ---------------------------------------------------------------------------


def test_catalog_has_the_metrics_rules_are_written_in() -> None:
    wanted = {
        "latency_avg": "duration",
        "latency_p50": "duration",
        "latency_p90": "duration",
        "latency_p95": "duration",
        "latency_p99": "duration",
        "latency_max": "duration",
        "rps": "rate",
        "requests_per_day": "count",
        "error_rate": "ratio",
        "concurrency_peak": "count",
        "concurrency_avg": "count",
        "cpu_percent": "percent",
        "memory_mb": "megabytes",
        "memory_percent": "percent",
        "event_loop_lag": "duration",
        "busy_ratio": "ratio",
        "queue_time_p95": "duration",
    }
    assert {name: METRICS[name].kind for name in wanted} == wanted
    assert all(spec.kind in KINDS and spec.name == name for name, spec in METRICS.items())


def test_user_gauges_are_metrics_and_typos_get_suggestions() -> None:
    assert metric_spec("gauge:queue_depth").kind == "count"
    with pytest.raises(RuleError, match="latency_p95"):
        metric_spec("latency_p59")
    for bad in ("gauge:", "gauge:9lives", "gauge:a-b", "nope"):
        with pytest.raises(RuleError):
            metric_spec(bad)


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("latency_p95", 2.5, "2.5s"),
        ("latency_avg", 0.25, "250ms"),
        ("error_rate", 0.05, "5%"),
        ("cpu_percent", 70.0, "70%"),
        ("memory_mb", 400.0, "400MB"),
        ("rps", 12.5, "12.5/s"),
        ("concurrency_peak", 10.0, "10"),
        ("gauge:queue_depth", 101.0, "101"),
        ("latency_avg", None, "no data"),
    ],
)
def test_format_value_by_kind(metric: str, value: float | None, text: str) -> None:
    assert format_value(metric, value) == text


# -- user gauges -----------------------------------------------------------------------------


def test_gauge_registry_sets_reads_and_survives_failing_callables() -> None:
    gauges = GaugeRegistry()
    gauges.set("queue_depth", 12)
    gauges.register("pool_in_use", lambda: 3)
    gauges.register("broken", lambda: 1 / 0)
    gauges.register("not_a_number", lambda: "many")  # type: ignore[arg-type, return-value]
    gauges.register("infinite", lambda: math.inf)
    assert gauges.collect() == {"user:queue_depth": 12.0, "user:pool_in_use": 3.0}
    assert gauges.collect() == {"user:queue_depth": 12.0, "user:pool_in_use": 3.0}
    gauges.register("queue_depth", lambda: 7)  # a reader replaces a set value
    assert gauges.collect()["user:queue_depth"] == 7.0


@pytest.mark.parametrize("name", ["", "queue depth", "9lives", "a:b", None])
def test_gauge_names_are_checked(name: str) -> None:
    gauges = GaugeRegistry()
    with pytest.raises(ConfigError):
        gauges.set(name, 1.0)
    with pytest.raises(ConfigError):
        gauges.register(name, lambda: 1.0)


def test_gauge_values_must_be_numbers_and_readers_callable() -> None:
    gauges = GaugeRegistry()
    with pytest.raises(ConfigError):
        gauges.set("x", "3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        gauges.register("x", 3)  # type: ignore[arg-type]


# -- metric_value ---------------------------------------------------------------------------


def test_window_is_aligned_and_takes_snapshots_starting_in_it() -> None:
    snaps = [snap(T0 - 10, 9.0), snap(T0, 1.0), snap(T0 + 50, 3.0), snap(T0 + 60, 100.0)]
    # now = T0 + 60: the 60 s window starts at floor(now / 10) * 10 - 60 = T0; a snapshot
    # starting at now is not in it yet, nor is the one before T0.
    assert metric_value("latency_avg", snaps, 60, T0 + 60) == pytest.approx(2.0)
    # Five seconds later the open slot's snapshot (a partial view) is in the window too.
    assert metric_value("latency_avg", snaps, 60, T0 + 65) == pytest.approx(104 / 3)
    assert metric_value("latency_max", snaps, 60, T0 + 65) == 100.0
    assert metric_value("latency_avg", snaps, 70, T0 + 60) == pytest.approx(13 / 3)


def test_rates_use_the_covered_part_of_the_window() -> None:
    snaps = [snap(T0 + 10 * k, *([0.1] * 5)) for k in range(6)]  # 30 requests in 60 s
    now = T0 + 60
    assert metric_value("rps", snaps, 600, now) == pytest.approx(0.5)
    assert metric_value("requests_per_day", snaps, 600, now) == pytest.approx(0.5 * 86400)
    assert metric_value("concurrency_avg", snaps, 600, now) == pytest.approx(3.0 / 60)
    # Half-way through the open slot, the covered time is 65 s.
    assert metric_value("rps", snaps, 600, now + 5) == pytest.approx(30 / 65)


def test_latency_and_error_metrics() -> None:
    latencies = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1 s
    snaps = [snap(T0, *latencies[:500], errors=10), snap(T0 + 10, *latencies[500:], errors=40)]
    now = T0 + 20
    assert metric_value("latency_avg", snaps, 60, now) == pytest.approx(0.5005)
    for metric, exact in (("latency_p50", 0.5), ("latency_p90", 0.9), ("latency_p99", 0.99)):
        assert metric_value(metric, snaps, 60, now) == pytest.approx(exact, rel=0.011)
    assert metric_value("latency_max", snaps, 60, now) == 1.0
    assert metric_value("error_rate", snaps, 60, now) == pytest.approx(0.05)


def test_no_data_is_none_not_zero() -> None:
    idle = [snap(T0, cpu_percent=5.0), snap(T0 + 10)]
    now = T0 + 20
    for metric in ("latency_avg", "latency_p95", "latency_max", "error_rate", "queue_time_p95"):
        assert metric_value(metric, idle, 60, now) is None
        assert metric_value(metric, [], 60, now) is None
    assert metric_value("rps", idle, 60, now) == 0.0  # idle is data: zero requests
    assert metric_value("concurrency_peak", idle, 60, now) == 0.0
    assert metric_value("rps", idle, 60, T0 + 1000) is None  # nothing in that window
    assert metric_value("memory_mb", idle, 60, now) is None
    assert metric_value("gauge:queue_depth", idle, 60, now) is None
    assert metric_value("cpu_percent", idle, 60, now) == 5.0


def test_workers_of_one_slot_add_up() -> None:
    snaps = [
        snap(T0, 0.1, worker=1, peak=3, busy=5.0, cpu_percent=40.0, rss_bytes=100 * 2**20),
        snap(T0, 0.3, worker=2, peak=4, busy=10.0, cpu_percent=20.0, rss_bytes=50 * 2**20),
        snap(T0 + 10, worker=1, peak=6, busy=0.0, cpu_percent=10.0, rss_bytes=100 * 2**20),
        snap(T0 + 10, worker=2, peak=0, busy=0.0, cpu_percent=10.0, rss_bytes=100 * 2**20),
    ]
    now = T0 + 20
    assert metric_value("concurrency_peak", snaps, 60, now) == 7.0  # 3 + 4 side by side
    assert metric_value("cpu_percent", snaps, 60, now) == pytest.approx((60 + 20) / 2)
    assert metric_value("memory_mb", snaps, 60, now) == pytest.approx((150 + 200) / 2)
    assert metric_value("busy_ratio", snaps, 60, now) == pytest.approx(15 / 2 / 20)
    assert metric_value("latency_avg", snaps, 60, now) == pytest.approx(0.2)


def test_gauges_memory_percent_loop_lag_and_user_gauges() -> None:
    snaps = [
        snap(T0, memory_percent_of_limit=30.0, loop_lag_seconds=0.01, user__queue_depth=100),
        snap(T0, worker=2, memory_percent_of_limit=20.0, user__queue_depth=120),
        snap(T0 + 10, memory_percent_of_limit=40.0, loop_lag_seconds=0.25),
    ]
    now = T0 + 20
    assert metric_value("memory_percent", snaps, 60, now) == pytest.approx((50 + 40) / 2)
    assert metric_value("event_loop_lag", snaps, 60, now) == 0.25
    # A user gauge is the mean of the readings: two workers reading one queue.
    assert metric_value("gauge:queue_depth", snaps, 60, now) == pytest.approx(110.0)


def test_queue_time_p95() -> None:
    snaps = [snap(T0, 0.1, queue=tuple(i / 1000 for i in range(1, 101)))]
    assert metric_value("queue_time_p95", snaps, 60, T0 + 10) == pytest.approx(0.095, rel=0.011)


def test_unknown_metric_is_a_rule_error() -> None:
    with pytest.raises(RuleError):
        metric_value("latency_p59", [], 60, T0)
    with pytest.raises(RuleError):
        SnapshotSource().value("latency_p59", 60, T0)


# -- SnapshotSource equals metric_value ------------------------------------------------------


def random_snapshots(rng: random.Random, slots: int, workers: int = 3) -> list[IntervalSnapshot]:
    out = []
    for k in range(slots):
        if rng.random() < 0.1:
            continue  # a gap: nobody wrote this interval
        for worker in range(workers):
            if rng.random() < 0.3:
                continue
            n = rng.randint(0, 12)
            gauges: dict[str, float] = {}
            if rng.random() < 0.8:
                gauges |= {"cpu_percent": rng.uniform(0, 100), "rss_bytes": rng.uniform(1e8, 5e8)}
                gauges["memory_percent_of_limit"] = rng.uniform(0, 90)
            if rng.random() < 0.5:
                gauges["loop_lag_seconds"] = rng.uniform(0, 0.1)
            if rng.random() < 0.5:
                gauges["user:queue_depth"] = rng.uniform(0, 200)
            out.append(
                IntervalSnapshot(
                    start=T0 + 10 * k,
                    seconds=10.0,
                    requests=n,
                    errors=rng.randint(0, n),
                    inflight_peak=rng.randint(0, 9),
                    busy_seconds=rng.uniform(0, 10),
                    latency=frozen(*(rng.lognormvariate(-2, 1.5) for _ in range(n))),
                    queue_time=frozen(*(rng.expovariate(100) for _ in range(rng.randint(0, 2)))),
                    gauges=gauges,
                    worker=worker + 10 * (k // 100),  # workers come and go
                )
            )
    rng.shuffle(out)  # the source sorts
    return out


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


NAMES = [*METRICS, "gauge:queue_depth", "gauge:absent"]


def test_source_equals_metric_value_on_random_data() -> None:
    rng = random.Random(7)
    snaps = random_snapshots(rng, 240)
    source = SnapshotSource(snaps)
    for _ in range(60):
        now = rng.uniform(T0 - 100, T0 + 2600)
        window = rng.choice([10, 60, 300, 600, 1800, 3600])
        for name in NAMES:
            expected = metric_value(name, snaps, window, now)
            assert same(source.value(name, window, now), expected), (name, window, now)


def test_source_fed_in_batches_and_out_of_order_equals_one_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "_RECENT", 4)  # exercise eviction of remembered histograms
    rng = random.Random(11)
    snaps = sorted(random_snapshots(rng, 200, workers=2), key=lambda s: s.start)
    source = SnapshotSource()
    queries = [(rng.uniform(T0, T0 + 2100), rng.choice([60, 600, 2000])) for _ in range(60)]
    for cut in range(0, len(snaps), 37):
        source.extend(snaps[cut : cut + 37])  # appends: incremental
        for now, window in queries[:20]:  # columns get built, then extended
            source.value("latency_p95", window, now)
            source.value("concurrency_peak", window, now)
            source.value("gauge:queue_depth", window, now)
    source.extend([snaps[5]])  # older than the last slot: rebuilds
    everything = [*snaps, snaps[5]]
    assert len(source) == len({s.start for s in snaps})
    for now, window in queries:
        for name in NAMES:
            expected = metric_value(name, everything, window, now)
            assert same(source.value(name, window, now), expected), (name, window, now)


def test_source_percentiles_over_long_random_access_windows() -> None:
    rng = random.Random(3)
    snaps = [
        snap(T0 + 10 * k, *(rng.lognormvariate(-1, 1) for _ in range(rng.randint(0, 4))))
        for k in range(2000)
    ]
    source = SnapshotSource(snaps)
    for _ in range(40):
        now, window = rng.uniform(T0, T0 + 20_100), rng.uniform(10, 20_000)
        for name in ("latency_p50", "latency_p99", "latency_max"):
            expected = metric_value(name, snaps, window, now)
            assert same(source.value(name, window, now), expected)


@pytest.mark.parametrize("q", [0.0, 0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
def test_packed_quantile_equals_histogram_quantile(q: float) -> None:
    rng = random.Random(5)
    for _ in range(20):
        h = Histogram()
        for _ in range(rng.randint(1, 300)):
            h.record(rng.choice([0.0, 5e-7, rng.lognormvariate(-3, 2), 4000.0]))
        packed = metrics._pack(h.freeze())
        assert metrics._quantile(packed, h.count, q, h.min, h.max) == h.quantile(q)


def test_empty_source_answers_none() -> None:
    source = SnapshotSource()
    assert len(source) == 0
    assert source.value("rps", 60, T0) is None
    source.extend([])
    assert source.value("gauge:queue_depth", 60, T0) is None
