"""k6 thresholds: parsing, clear errors, whole-run verdicts, windows, and abortOnFail."""

from __future__ import annotations

from typing import Any

import pytest

from scalewise.errors import ScenarioError
from scalewise.loadtest.results import ResultRecorder, RunResult
from scalewise.loadtest.thresholds import (
    Threshold,
    evaluate,
    parse_cli_threshold,
    parse_thresholds,
    should_abort,
)

ORIGIN = 50.0


def _request(rec: ResultRecorder, at: float, seconds: float, **kw: object) -> None:
    name = str(kw.get("name", "home"))
    status = int(kw.get("status", 200))  # type: ignore[call-overload]
    lag = float(kw.get("lag", 0.0))  # type: ignore[arg-type]
    t = ORIGIN + at
    rec.record(
        name,
        status,
        None,
        status >= 400,
        t,
        t + lag,
        t + lag,
        t + seconds * 0.9,
        t + seconds,
        500,
        50,
    )


def _run(slow_from: float = 30.0, slow_to: float = 40.0, seconds: int = 60) -> RunResult:
    """100 req/s of 20 ms; between ``slow_from`` and ``slow_to`` s, 800 ms and 10 % 500s."""
    rec = ResultRecorder(origin=ORIGIN)
    for tick in range(seconds * 100):
        at = tick / 100
        rec.roll(ORIGIN + at)
        slow = slow_from <= at < slow_to
        status = 500 if slow and tick % 10 == 0 else 200
        _request(
            rec, at, 0.8 if slow else 0.02, status=status, name="login" if tick % 4 == 0 else "home"
        )
        if tick % 100 == 0:
            rec.record_check("status is 200", status == 200)
            rec.record_iteration("browse", 0.5)
            rec.set_vus(10, 20)
    return rec.result({"started_at": 1.7e9}, now=ORIGIN + seconds)


@pytest.fixture(scope="module")
def run() -> RunResult:
    return _run()


def _one(text: str, result: RunResult) -> tuple[bool, float]:
    outcome = evaluate([parse_cli_threshold(text)], result)[0]
    return outcome.ok, outcome.observed


# -- parsing ---------------------------------------------------------------------------


def test_parse_k6_forms() -> None:
    spec: dict[str, list[str | dict[str, object]]] = {
        "http_req_duration": [
            "p(95)<500",
            "avg <= 200",
            {"threshold": "p(99.9) < 1500", "abortOnFail": True, "delayAbortEval": "10s"},
        ],
        "http_req_failed": ["rate<0.01"],
        "http_req_duration{name:login}": ["max<2000"],
        "checks{check:status is 200}": ["rate>0.99"],
        "http_reqs": ["count>=100", "rate>10"],
        "vus_max": ["value<=50"],
    }
    parsed = parse_thresholds(spec, "smoke.yaml")
    assert [(t.label, t.aggregation, t.op, t.value) for t in parsed] == [
        ("http_req_duration", "p", "<", 500.0),
        ("http_req_duration", "avg", "<=", 200.0),
        ("http_req_duration", "p", "<", 1500.0),
        ("http_req_failed", "rate", "<", 0.01),
        ("http_req_duration{name:login}", "max", "<", 2000.0),
        ("checks{check:status is 200}", "rate", ">", 0.99),
        ("http_reqs", "count", ">=", 100.0),
        ("http_reqs", "rate", ">", 10.0),
        ("vus_max", "value", "<=", 50.0),
    ]
    third = parsed[2]
    assert (third.percentile, third.abort_on_fail, third.delay_abort_eval) == (99.9, True, 10.0)


def test_parse_windowed_forms() -> None:
    cli = parse_cli_threshold("http_req_duration: p(95)<500 over 1m")
    assert (cli.window, cli.value, cli.expression) == (60.0, 500.0, "p(95)<500 over 1m")
    obj = parse_thresholds({"http_req_failed": [{"threshold": "rate<0.05", "window": "30s"}]}, "s")
    assert obj[0].window == 30.0


def test_parse_cli_with_a_tag() -> None:
    th = parse_cli_threshold("http_req_duration{name:login}: p(90) < 250")
    assert (th.metric, th.tag, th.percentile, th.op) == (
        "http_req_duration",
        ("name", "login"),
        90.0,
        "<",
    )


@pytest.mark.parametrize(
    ("spec", "path", "expected"),
    [
        ({"http_req_latency": ["p(95)<1"]}, "thresholds.http_req_latency", "a metric, one of"),
        (
            {"http_req_duration": ["p95<500"]},
            "thresholds.http_req_duration[0]",
            "an expression like 'p(95)<500'",
        ),
        (
            {"http_req_duration": ["p(95)<500", "rate<1"]},
            "thresholds.http_req_duration[1]",
            "avg, min, med, max, p(N)",
        ),
        ({"http_req_failed": ["p(95)<1"]}, "thresholds.http_req_failed[0]", "'rate<0.01'"),
        ({"http_reqs": ["value<1"]}, "thresholds.http_reqs[0]", "count, rate"),
        (
            {"http_req_duration": ["p(101)<1"]},
            "thresholds.http_req_duration[0]",
            "between 0 and 100",
        ),
        ({"http_req_duration": ["p(95)<"]}, "thresholds.http_req_duration[0]", "an expression"),
        ({"http_req_duration": []}, "thresholds.http_req_duration", "a list of expressions"),
        (
            {"http_req_duration": [{"threshold": "p(95)<1", "abort": True}]},
            "thresholds.http_req_duration[0].abort",
            "one of threshold",
        ),
        (
            {"http_req_duration": [{"threshold": "p(95)<1", "abortOnFail": "yes"}]},
            "thresholds.http_req_duration[0].abortOnFail",
            "true or false",
        ),
        (
            {"http_req_duration": [{"threshold": "p(95)<1", "delayAbortEval": "soon"}]},
            "thresholds.http_req_duration[0].delayAbortEval",
            "a duration",
        ),
        (
            {"http_req_duration": [{"abortOnFail": True}]},
            "thresholds.http_req_duration[0]",
            "an expression",
        ),
        ({"vus{name:x}": ["value<1"]}, "thresholds.vus{name:x}", "no tag filter"),
        (
            {"http_req_waiting{name:x}": ["p(95)<1"]},
            "thresholds.http_req_waiting{name:x}",
            "no tag filter",
        ),
        (
            {"http_req_duration{url:x}": ["p(95)<1"]},
            "thresholds.http_req_duration{url:x}",
            "{name:value}",
        ),
        (
            {"http_req_duration{name:x}": ["p(95)<1 over 1m"]},
            "thresholds.http_req_duration{name:x}[0].window",
            "whole metric",
        ),
    ],
)
def test_bad_thresholds_name_the_file_field_and_expectation(
    spec: dict[str, Any], path: str, expected: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_thresholds(spec, "smoke.yaml")
    assert info.value.source == "smoke.yaml"
    assert info.value.path == path
    assert expected in info.value.expected


def test_bad_cli_threshold() -> None:
    with pytest.raises(
        ScenarioError, match=r"--threshold: threshold: expected 'METRIC: EXPRESSION'"
    ):
        parse_cli_threshold("p(95)<300")
    with pytest.raises(ScenarioError, match=r"an expression like 'rate<0\.01'"):
        parse_cli_threshold("http_req_failed: rate<<1")


# -- whole-run verdicts ----------------------------------------------------------------


def test_trend_aggregations_are_in_milliseconds(run: RunResult) -> None:
    # 6,000 requests: 5,000 at 20 ms, 1,000 at 800 ms
    assert _one("http_req_duration: p(50)<25", run) == (True, pytest.approx(20, rel=0.01))
    assert _one("http_req_duration: med<25", run)[1] == pytest.approx(20, rel=0.01)
    assert _one("http_req_duration: p(95)<500", run) == (False, pytest.approx(800, rel=0.01))
    assert _one("http_req_duration: max<=800", run) == (True, pytest.approx(800))
    assert _one("http_req_duration: min>=20", run)[1] == pytest.approx(20)
    assert _one("http_req_duration: avg<200", run) == (True, pytest.approx(150))
    assert _one("http_req_waiting: max<721", run) == (True, pytest.approx(720))


def test_rates_counters_and_gauges(run: RunResult) -> None:
    assert _one("http_req_failed: rate<0.01", run) == (False, pytest.approx(100 / 6000))
    assert _one("http_reqs: count==6000", run) == (True, 6000)
    assert _one("http_reqs: rate>=100", run) == (True, pytest.approx(100))
    assert _one("http_reqs{status:500}: count<=100", run) == (True, 100)
    assert _one("iterations{scenario:browse}: count==60", run) == (True, 60)
    assert _one("checks: rate>0.8", run) == (True, pytest.approx(50 / 60))
    assert _one("checks{check:status is 200}: rate>0.99", run)[0] is False
    assert _one("data_received: count>0", run) == (True, 6000 * 500)
    assert _one("vus: value==10", run) == (True, 10)
    assert _one("vus_max: value!=20", run) == (False, 20)
    assert _one("iteration_duration: p(99)<=500", run)[0] is True


def test_sub_metrics_by_name(run: RunResult) -> None:
    login = _one("http_req_failed{name:login}: rate<0.5", run)
    assert login == (True, pytest.approx(50 / 1500))  # every 20th tick fails in the stall
    assert _one("http_reqs{name:login}: count==1500", run) == (True, 1500)
    assert _one("http_req_duration{name:home}: p(99)<900", run)[0] is True


def test_a_metric_without_samples_aggregates_to_zero(run: RunResult) -> None:
    assert _one("http_req_duration{name:nope}: p(95)<1", run) == (True, 0.0)
    assert _one("http_reqs{status:418}: count<1", run) == (True, 0.0)
    assert _one("dropped_iterations: count==0", run) == (True, 0.0)


# -- windows ---------------------------------------------------------------------------


def test_every_window_must_hold_and_the_worst_is_reported(run: RunResult) -> None:
    whole = _one("http_req_duration: p(80)<500", run)
    assert whole == (True, pytest.approx(20, rel=0.01))  # the whole run hides the stall
    outcome = evaluate([parse_cli_threshold("http_req_duration: avg<500 over 10s")], run)[0]
    assert not outcome.ok
    assert outcome.observed == pytest.approx(800, rel=0.01)
    assert outcome.worst_window == (30.0, 40.0)
    assert outcome.metric == "http_req_duration"


def test_window_rates_and_counts(run: RunResult) -> None:
    failed = evaluate([parse_cli_threshold("http_req_failed: rate<0.05 over 10s")], run)[0]
    assert (failed.ok, failed.observed, failed.worst_window) == (
        False,
        pytest.approx(0.1),
        (30.0, 40.0),
    )
    rps = evaluate([parse_cli_threshold("http_reqs: rate>=100 over 5s")], run)[0]
    assert rps.ok
    assert rps.observed == pytest.approx(100)
    lower = evaluate([parse_cli_threshold("http_req_duration: min>25 over 5s")], run)[0]
    assert not lower.ok
    assert lower.observed == pytest.approx(20, rel=0.01)


def test_a_window_longer_than_the_run_judges_the_whole_run() -> None:
    short = _run(slow_from=2, slow_to=3, seconds=5)
    outcome = evaluate([parse_cli_threshold("http_req_duration: max<100 over 1m")], short)[0]
    assert outcome.worst_window == (0.0, 5.0)
    assert not outcome.ok


def test_windows_on_a_compacted_series() -> None:
    rec = ResultRecorder(origin=ORIGIN, max_points=16)
    for tick in range(6000):
        at = tick / 100
        rec.roll(ORIGIN + at)
        _request(rec, at, 0.8 if 30 <= at < 40 else 0.02)
    result = rec.result({}, now=ORIGIN + 60)
    assert result.interval == 4.0
    outcome = evaluate([parse_cli_threshold("http_req_duration: p(50)<500 over 8s")], result)[0]
    assert not outcome.ok
    start, end = outcome.worst_window or (0, 0)
    assert end - start == pytest.approx(8.0)
    assert 28 <= start <= 32


# -- abortOnFail -----------------------------------------------------------------------


def _abort(text: str, delay: str = "0s") -> list[Threshold]:
    metric, expr = text.split(": ", 1)
    return parse_thresholds(
        {metric: [{"threshold": expr, "abortOnFail": True, "delayAbortEval": delay}]}, "s"
    )


def test_should_abort_on_live_totals_after_the_delay() -> None:
    rec = ResultRecorder(origin=ORIGIN)
    ths = _abort("http_req_failed: rate<0.5", delay="10s") + parse_thresholds(
        {"http_req_failed": ["rate<0.01"]}, "s"
    )
    for tick in range(5):
        _request(rec, tick, 0.01, status=500)
    live = rec.snapshot(ORIGIN + 5)
    assert should_abort(ths, live, elapsed=5.0) == []  # delayAbortEval not yet passed
    stop = should_abort(ths, live, elapsed=10.0)
    assert [(o.metric, o.expression, o.abort) for o in stop] == [
        ("http_req_failed", "rate<0.5", True)
    ]
    assert should_abort(ths, rec.totals(ORIGIN + 10), elapsed=10.0) == stop


def test_should_abort_on_the_latest_window() -> None:
    ths = _abort("http_req_duration: p(95)<500 over 5s")
    rec = ResultRecorder(origin=ORIGIN)
    verdicts = []
    for tick in range(2000):
        at = tick / 100
        if rec.roll(ORIGIN + at) is not None:
            verdicts.append((at, bool(should_abort(ths, rec.snapshot(ORIGIN + at), at))))
        _request(rec, at, 0.9 if at >= 12 else 0.01)
    first_abort = next(at for at, stop in verdicts if stop)
    assert 12 < first_abort <= 18  # once p95 of the last 5 s crosses 500 ms
    assert not any(stop for at, stop in verdicts if at <= 12)


def test_final_outcomes_mark_failed_abort_thresholds(run: RunResult) -> None:
    outcomes = evaluate(
        _abort("http_req_failed: rate<0.001") + _abort("http_req_failed: rate<0.5"), run
    )
    assert [(o.ok, o.abort) for o in outcomes] == [(False, True), (True, False)]


def test_windowed_abort_waits_for_a_series() -> None:
    ths = _abort("http_req_duration: p(95)<500 over 1s")
    rec = ResultRecorder(origin=ORIGIN)
    for tick in range(300):
        rec.roll(ORIGIN + tick / 100)
        _request(rec, tick / 100, 0.9)
    assert should_abort(ths, rec.totals(ORIGIN + 3), elapsed=3.0) == []
    assert should_abort(ths, rec.snapshot(ORIGIN + 3), elapsed=3.0)[0].worst_window == (1.0, 2.0)
