"""The Prometheus text rendering, checked with prometheus_client's own parser."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scalewise.clock import ManualClock
from scalewise.metrics.exposition import CONTENT_TYPE, render
from scalewise.metrics.monitor import FleetView
from scalewise.metrics.process import ContainerLimits
from scalewise.metrics.recorder import Recorder
from scalewise.metrics.series import BucketCounts, SeriesTable
from scalewise.options import MetricsOptions

NASTY_ROUTE = '/files/"quoted"\\back\\slash'
GAUGES = {"rss_bytes": 1e6, "cpu_seconds": 2.0, "open_fds": 10, "loop_lag_seconds": 0.002}
LIMITS = ContainerLimits(
    memory_limit_bytes=512 * 2**20,
    memory_source="cgroup2",
    cpu_limit_cores=1.5,
    cpu_source="cgroup2",
    host_memory_bytes=16 * 2**30,
    host_cpus=8,
)

COUNTERS = {
    "scalewise_http_requests",
    "scalewise_http_exceptions",
    "scalewise_http_client_disconnects",
    "scalewise_route_overflow",
    "scalewise_worker_busy_seconds",
    "scalewise_internal_errors",
    "process_cpu_seconds",
}
HISTOGRAMS = {
    "scalewise_http_request_duration_seconds",
    "scalewise_http_time_to_first_byte_seconds",
    "scalewise_http_request_queue_seconds",
}
GAUGE_FAMILIES = {
    "scalewise_http_requests_in_flight",
    "scalewise_workers",
    "process_resident_memory_bytes",
    "process_open_fds",
    "scalewise_event_loop_lag_seconds",
}
LIMIT_FAMILIES = {"scalewise_container_memory_limit_bytes", "scalewise_container_cpu_limit_cores"}


def serve(
    rec: Recorder,
    clock: ManualClock,
    method: str,
    route: str,
    status: int,
    seconds: float,
    **extra: object,
) -> None:
    start = rec.started()
    clock.advance(seconds)
    rec.finished(method, route, status, start, clock.monotonic(), **extra)  # type: ignore[arg-type]


def busy_recorder(worker: int = 1) -> Recorder:
    clock = ManualClock()
    rec = Recorder(MetricsOptions(multiprocess_dir=None, max_routes=3), clock=clock, worker=worker)
    for seconds in (0.002, 0.03, 0.03, 0.2, 0.7, 3.0, 45.0, 120.0):
        serve(rec, clock, "GET", "/items/{id}", 200, seconds, ttfb=seconds / 2, queue=0.004)
    serve(rec, clock, "GET", "/items/{id}", 404, 0.001)
    serve(rec, clock, "POST", "/orders", 500, 0.5, disconnected=True)
    serve(rec, clock, "PUT", NASTY_ROUTE, 201, 0.05)
    serve(rec, clock, "GET", "/beyond/the/cap", 200, 0.01)
    rec.count("exceptions")
    rec.started()  # one request still in flight
    return rec


def view_of(rec: Recorder, gauges: list[dict[str, float]] | None = None) -> FleetView:
    return FleetView(
        series=rec.table,
        snapshots=rec.recent(900),
        gauges=[dict(GAUGES)] if gauges is None else gauges,
        inflight=rec.inflight,
        workers=[rec.worker],
        started=rec.started_at,
        now=rec.now(),
    )


@pytest.fixture(scope="module")
def rec() -> Recorder:
    return busy_recorder()


@pytest.fixture(scope="module")
def text(rec: Recorder) -> str:
    return render(view_of(rec), LIMITS)


@pytest.fixture(scope="module")
def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_content_type() -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_families_and_types(families: dict) -> None:
    expected = COUNTERS | HISTOGRAMS | GAUGE_FAMILIES | LIMIT_FAMILIES
    assert set(families) == expected
    for name in COUNTERS:
        assert families[name].type == "counter", name
    for name in HISTOGRAMS:
        assert families[name].type == "histogram", name
    for name in GAUGE_FAMILIES | LIMIT_FAMILIES:
        assert families[name].type == "gauge", name


def test_help_and_type_lines_for_every_family(text: str, families: dict) -> None:
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    types = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert helps == types
    assert len(types) == len(families)
    for family in families.values():
        assert family.documentation, family.name
    # Every sample line belongs to a family declared before it.
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        assert line, "no blank lines inside the body"
        assert not line.startswith("#"), line
        sample = line.split("{")[0].split(" ")[0]
        bases = {sample} | {sample.removesuffix(suffix) for suffix in ("_bucket", "_sum", "_count")}
        assert bases & declared, line
    assert text.endswith("\n")


def test_counters_end_in_total(families: dict) -> None:
    for name in COUNTERS:
        samples = families[name].samples
        assert samples, name
        for sample in samples:
            assert sample.name == f"{name}_total"


def test_counter_and_gauge_values(rec: Recorder, families: dict) -> None:
    def value(name: str) -> float:
        (sample,) = families[name].samples
        return sample.value

    assert value("scalewise_http_exceptions") == 1
    assert value("scalewise_http_client_disconnects") == 1
    assert value("scalewise_route_overflow") == 1
    assert value("scalewise_worker_busy_seconds") == pytest.approx(
        rec.table.counters["busy_seconds"]
    )
    assert value("scalewise_internal_errors") == 0
    assert value("scalewise_http_requests_in_flight") == 1
    assert value("scalewise_workers") == 1
    assert value("process_resident_memory_bytes") == 1e6
    assert value("process_cpu_seconds") == 2.0
    assert value("process_open_fds") == 10
    assert value("scalewise_event_loop_lag_seconds") == 0.002
    assert value("scalewise_container_memory_limit_bytes") == 512 * 2**20
    assert value("scalewise_container_cpu_limit_cores") == 1.5
    requests = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in families["scalewise_http_requests"].samples
    }
    assert requests == {
        ("GET", "/items/{id}", "2xx"): 8,
        ("GET", "/items/{id}", "4xx"): 1,
        ("POST", "/orders", "5xx"): 1,
        ("PUT", NASTY_ROUTE, "2xx"): 1,
        ("GET", "__other__", "2xx"): 1,
    }


def test_label_values_are_escaped(text: str, families: dict) -> None:
    assert 'route="/files/\\"quoted\\"\\\\back\\\\slash"' in text
    routes = {
        s.labels["route"] for s in families["scalewise_http_request_duration_seconds"].samples
    }
    assert NASTY_ROUTE in routes


def test_label_escaping_of_newlines() -> None:
    clock = ManualClock()
    rec = Recorder(MetricsOptions(multiprocess_dir=None), clock=clock, worker=1)
    serve(rec, clock, "GET", "/a\nb", 200, 0.1)
    text = render(view_of(rec, gauges=[]))
    assert 'route="/a\\nb"' in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["scalewise_http_requests"].samples
    assert sample.labels["route"] == "/a\nb"


def histogram_series(family: object) -> dict[tuple, dict[str, object]]:
    """Samples of a histogram family grouped by their labels without ``le``."""
    grouped: dict[tuple, dict[str, object]] = defaultdict(lambda: {"buckets": []})
    for s in family.samples:  # type: ignore[attr-defined]
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        if s.name.endswith("_bucket"):
            grouped[key]["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            grouped[key]["count"] = s.value
        elif s.name.endswith("_sum"):
            grouped[key]["sum"] = s.value
    return grouped


@pytest.mark.parametrize("name", sorted(HISTOGRAMS))
def test_buckets_are_cumulative_and_inf_equals_count(name: str, families: dict) -> None:
    series = histogram_series(families[name])
    assert series
    for labels, parts in series.items():
        buckets = parts["buckets"]
        bounds = [b for b, _ in buckets]
        counts = [n for _, n in buckets]
        assert bounds == sorted(bounds), labels
        assert bounds[-1] == math.inf, labels
        assert all(a <= b for a, b in itertools.pairwise(counts)), labels
        assert counts[-1] == parts["count"], labels
        assert "sum" in parts, labels


def test_histogram_figures_match_the_recorder(rec: Recorder, families: dict) -> None:
    series = histogram_series(families["scalewise_http_request_duration_seconds"])
    key = (("method", "GET"), ("route", "/items/{id}"), ("status", "2xx"))
    parts = series[key]
    assert parts["count"] == 8
    assert parts["sum"] == pytest.approx(0.002 + 0.03 + 0.03 + 0.2 + 0.7 + 3.0 + 45.0 + 120.0)
    cumulative = dict(parts["buckets"])
    assert cumulative[0.005] == 1
    assert cumulative[0.05] == 3
    assert cumulative[60.0] == 7
    assert cumulative[math.inf] == 8
    requests = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["scalewise_http_requests"].samples
    }
    for labels, parts in series.items():
        assert requests[labels] == parts["count"]
    ttfb = histogram_series(families["scalewise_http_time_to_first_byte_seconds"])
    # every request has a TTFB: responses sent in one piece count with their latency
    assert ttfb[()]["count"] == sum(parts["count"] for parts in series.values())
    queue = histogram_series(families["scalewise_http_request_queue_seconds"])
    assert queue[()]["count"] == 8
    assert dict(queue[()]["buckets"])[0.005] == 8


def test_no_gauges_and_no_limits_leave_process_families_out(rec: Recorder) -> None:
    text = render(view_of(rec, gauges=[]))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names == COUNTERS - {"process_cpu_seconds"} | HISTOGRAMS | {
        "scalewise_http_requests_in_flight",
        "scalewise_workers",
    }


def test_process_gauges_add_over_workers_and_lag_takes_the_worst(rec: Recorder) -> None:
    gauges = [dict(GAUGES), {"rss_bytes": 3e6, "cpu_seconds": 1.5, "loop_lag_seconds": 0.5}]
    view = view_of(rec, gauges=gauges)
    view.workers = [1, 2]
    unlimited = ContainerLimits(None, "host", None, "host", 8 * 2**30, 4)
    families = {f.name: f for f in text_string_to_metric_families(render(view, unlimited))}

    def value(name: str) -> float:
        (sample,) = families[name].samples
        return sample.value

    assert value("process_resident_memory_bytes") == 4e6
    assert value("process_cpu_seconds") == 3.5
    assert value("process_open_fds") == 10
    assert value("scalewise_event_loop_lag_seconds") == 0.5
    assert value("scalewise_workers") == 2
    assert value("scalewise_container_memory_limit_bytes") == 8 * 2**30
    assert value("scalewise_container_cpu_limit_cores") == 4


def test_empty_table_renders_valid_text() -> None:
    table = SeriesTable((0.1, 1.0), (0.01,))
    view = FleetView(table, [], [], 0, [], 0.0, 0.0)
    families = {f.name: f for f in text_string_to_metric_families(render(view))}
    assert families["scalewise_http_requests"].samples == []
    (inf_bucket,) = [
        s
        for s in families["scalewise_http_request_queue_seconds"].samples
        if s.labels.get("le") == "+Inf"
    ]
    assert inf_bucket.value == 0


# -- SeriesTable -------------------------------------------------------------------------


def test_series_table_merged_adds_counts() -> None:
    a, b = busy_recorder(1).table, busy_recorder(2).table
    b.series("DELETE", "/only-in-b", "2xx").duration.observe(0.3)
    merged = SeriesTable.merged([a, b])
    assert merged is not None
    key = ("GET", "/items/{id}", "2xx")
    assert merged.requests[key].duration.count == 16
    a_counts, b_counts = a.requests[key].duration.counts, b.requests[key].duration.counts
    assert merged.requests[key].duration.counts == [
        x + y for x, y in zip(a_counts, b_counts, strict=True)
    ]
    assert merged.requests[key].duration.sum == pytest.approx(2 * a.requests[key].duration.sum)
    assert merged.requests[("DELETE", "/only-in-b", "2xx")].duration.count == 1
    assert merged.ttfb.count == a.ttfb.count + b.ttfb.count
    assert merged.queue_time.count == 16
    assert merged.counters["exceptions"] == 2
    assert merged.counters["busy_seconds"] == pytest.approx(
        a.counters["busy_seconds"] + b.counters["busy_seconds"]
    )
    # The inputs are untouched.
    assert a.requests[key].duration.count == 8


def test_series_table_merged_edge_cases() -> None:
    assert SeriesTable.merged([]) is None
    a = SeriesTable((0.1, 1.0), (0.01,))
    a.series("GET", "/", "2xx").duration.observe(0.05)
    other_buckets = SeriesTable((0.5,), (0.01,))
    other_buckets.series("GET", "/", "2xx").duration.observe(0.05)
    merged = SeriesTable.merged([a, other_buckets])
    assert merged is not None
    assert merged.requests[("GET", "/", "2xx")].duration.count == 1
    with pytest.raises(ValueError, match="buckets"):
        BucketCounts((0.1,)).add(BucketCounts((0.2,)))


def test_series_table_dict_round_trip_through_json(rec: Recorder) -> None:
    data = json.loads(json.dumps(rec.table.to_dict()))
    back = SeriesTable.from_dict(data)
    assert back.bounds == rec.table.bounds
    assert back.queue_time.bounds == rec.table.queue_time.bounds
    assert set(back.requests) == set(rec.table.requests)
    for labels, s in rec.table.requests.items():
        assert back.requests[labels].duration.counts == s.duration.counts
        assert back.requests[labels].duration.count == s.duration.count
        assert back.requests[labels].duration.sum == s.duration.sum
        assert back.requests[labels].key == s.key
    assert back.ttfb.counts == rec.table.ttfb.counts
    assert back.queue_time.counts == rec.table.queue_time.counts
    assert back.counters == rec.table.counters
    assert back.to_dict() == rec.table.to_dict()
    # And it renders exactly like the original.
    assert render(FleetView(back, [], [], 0, [1], 0.0, 0.0)) == render(
        FleetView(rec.table, [], [], 0, [1], 0.0, 0.0)
    )


def test_bucket_counts_from_dict_rejects_a_wrong_length() -> None:
    with pytest.raises(ValueError, match="mismatch"):
        BucketCounts.from_dict((0.1, 1.0), {"counts": [1, 2], "sum": 0.0})
