"""PrometheusSource against canned API replies (httpx.MockTransport), and the PromQL catalog."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from scalewise.errors import RuleError, ScalewiseError
from scalewise.policy.model import Action, Comparison, Rule
from scalewise.policy.prometheus import (
    REDUCE_LABEL,
    PrometheusSource,
    PrometheusUnavailable,
    promql_duration,
    promql_for,
)

URL = "http://prometheus.test:9090"
NOW = 1_700_000_000.0

Handler = Callable[[httpx.Request], httpx.Response]


def rule(promql: str | None = "sum(rate(x[1m]))", metric: str = "rps", **kw: Any) -> Rule:
    return Rule(
        name="busy",
        metric=metric,
        op=Comparison.GT,
        threshold=10.0,
        action=Action.SCALE_UP,
        promql=promql,
        **kw,
    )


def vector(*values: str) -> dict[str, Any]:
    result = [
        {"metric": {"instance": f"10.0.0.{i}:8000"}, "value": [NOW, v]}
        for i, v in enumerate(values)
    ]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def reply(body: Any, status: int = 200) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handler


@pytest.fixture
def source_for() -> Iterator[Callable[[Handler], PrometheusSource]]:
    clients: list[httpx.Client] = []

    def make(handler: Handler) -> PrometheusSource:
        client = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(client)
        return PrometheusSource(URL, timeout=2.0, client=client)

    yield make
    for client in clients:
        client.close()


def test_one_sample_is_the_value_and_the_query_is_an_instant_query_at_now(source_for) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector("12.5"))

    assert source_for(handler).value(rule(), NOW) == 12.5
    (request,) = seen
    assert request.method == "GET"
    assert str(request.url).startswith(f"{URL}/api/v1/query?")
    assert request.url.params["query"] == "sum(rate(x[1m]))"
    assert float(request.url.params["time"]) == NOW
    assert request.url.params["timeout"] == "2s"


def test_scalar_is_the_value(source_for) -> None:
    body = {"status": "success", "data": {"resultType": "scalar", "result": [NOW, "3"]}}
    assert source_for(reply(body)).value(rule(promql="scalar(vector(3))"), NOW) == 3.0


def test_empty_vector_is_missing_data(source_for) -> None:
    assert source_for(reply(vector())).value(rule(), NOW) is None


@pytest.mark.parametrize(
    "body",
    [
        vector("NaN"),
        {"status": "success", "data": {"resultType": "scalar", "result": [NOW, "NaN"]}},
    ],
)
def test_nan_is_missing_data(source_for, body: dict[str, Any]) -> None:
    assert source_for(reply(body)).value(rule(), NOW) is None


def test_infinity_is_a_value(source_for) -> None:
    assert source_for(reply(vector("+Inf"))).value(rule(), NOW) == math.inf


def test_several_series_are_an_error_that_says_how_to_fix_it(source_for) -> None:
    with pytest.raises(RuleError) as info:
        source_for(reply(vector("1", "2", "3"))).value(rule(), NOW)
    assert "promql for rule busy returned 3 series; aggregate it, e.g. with sum()" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("how", "expected"), [("max", 3.0), ("min", 1.0), ("sum", 6.0), ("avg", 2.0)]
)
def test_several_series_reduced_when_the_rule_says_so(
    source_for, how: str, expected: float
) -> None:
    r = rule(labels={REDUCE_LABEL: how})
    assert source_for(reply(vector("1", "2", "3", "NaN"))).value(r, NOW) == expected


def test_several_nan_series_reduced_are_missing_data(source_for) -> None:
    r = rule(labels={REDUCE_LABEL: "max"})
    assert source_for(reply(vector("NaN", "NaN"))).value(r, NOW) is None


def test_a_range_vector_is_a_rule_error(source_for) -> None:
    body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    with pytest.raises(RuleError, match="returned a matrix, expected an instant vector"):
        source_for(reply(body)).value(rule(promql="x[5m]"), NOW)


@pytest.mark.parametrize(("status", "kind"), [(400, "bad_data"), (422, "execution")])
def test_a_bad_query_is_a_rule_error(source_for, status: int, kind: str) -> None:
    body = {"status": "error", "errorType": kind, "error": "parse error at char 5"}
    with pytest.raises(RuleError, match=f"rule 'busy' failed: {kind}: parse error at char 5"):
        source_for(reply(body, status)).value(rule(promql="sum(("), NOW)


def test_a_query_timeout_on_the_server_is_unavailable(source_for) -> None:
    body = {"status": "error", "errorType": "timeout", "error": "query timed out"}
    with pytest.raises(PrometheusUnavailable, match="timeout: query timed out"):
        source_for(reply(body, 503)).value(rule(), NOW)


def test_an_http_error_without_json_is_unavailable(source_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with pytest.raises(PrometheusUnavailable, match="HTTP 502 without a JSON body"):
        source_for(handler).value(rule(), NOW)


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success"},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1]}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}},
        ["not", "an", "object"],
    ],
)
def test_a_garbled_reply_is_unavailable(source_for, body: Any) -> None:
    with pytest.raises(PrometheusUnavailable):
        source_for(reply(body)).value(rule(), NOW)


def test_bad_json_is_unavailable(source_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"status": "succ', headers={"content-type": "json"})

    with pytest.raises(PrometheusUnavailable, match="without a JSON body"):
        source_for(handler).value(rule(), NOW)


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (httpx.ConnectError("connection refused"), "unreachable: connection refused"),
        (httpx.ReadTimeout("slow"), "did not answer within 2s"),
    ],
)
def test_transport_failures_are_unavailable(source_for, exc: Exception, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(PrometheusUnavailable, match=message) as info:
        source_for(handler).value(rule(), NOW)
    assert isinstance(info.value, ScalewiseError)
    assert not isinstance(info.value, RuleError)


def test_an_unreachable_real_port_is_unavailable() -> None:
    with (
        PrometheusSource("http://127.0.0.1:9", timeout=0.5) as source,
        pytest.raises(PrometheusUnavailable),
    ):
        source.value(rule(), NOW)


def test_without_promql_the_catalog_metric_is_translated(source_for) -> None:
    queries: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        queries.append(request.url.params["query"])
        return httpx.Response(200, json=vector("0.25"))

    r = rule(promql=None, metric="latency_p95", window=300.0)
    assert source_for(handler).value(r, NOW) == 0.25
    assert queries == [promql_for("latency_p95", 300.0)]


def test_the_selector_narrows_every_metric() -> None:
    client = httpx.Client(transport=httpx.MockTransport(reply(vector())))
    with client:
        source = PrometheusSource(URL, client=client, selector='job="api"')
        expr = source.expression(rule(promql=None, metric="error_rate", window=60.0))
        source.close()  # does not close a client it was given
        assert not client.is_closed
    assert expr.count('job="api"') == 2
    assert 'status="5xx",job="api"' in expr


# -- the PromQL catalog ---------------------------------------------------------------------


def test_promql_for_traffic_metrics_sums_the_fleet() -> None:
    assert promql_for("rps", 300) == (
        "sum(rate(scalewise_http_requests_total[5m])) or sum(scalewise_workers) * 0"
    )
    assert promql_for("requests_per_day", 3600).startswith("86400 * (sum(rate(")
    assert promql_for("latency_p95", 300) == (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(scalewise_http_request_duration_seconds_bucket[5m])))"
    )
    assert promql_for("latency_avg", 60) == (
        "sum(rate(scalewise_http_request_duration_seconds_sum[1m]))"
        " / sum(rate(scalewise_http_request_duration_seconds_count[1m]))"
    )
    assert promql_for("error_rate", 30) == (
        '(sum(rate(scalewise_http_requests_total{status="5xx"}[30s])) or vector(0))'
        " / sum(rate(scalewise_http_requests_total[30s]))"
    )
    assert promql_for("concurrency_peak", 60) == (
        "max_over_time(sum(scalewise_http_requests_in_flight)[1m:])"
    )


def test_promql_for_process_metrics_takes_the_busiest_scalewise_instance() -> None:
    # Units of the in-process catalog: percent of one core, MiB, percent of the limit.
    assert promql_for("cpu_percent", 120) == (
        "max(rate(process_cpu_seconds_total[2m]) and scalewise_workers) * 100"
    )
    assert promql_for("memory_mb", 1800) == (
        "max(avg_over_time(process_resident_memory_bytes[30m]) and scalewise_workers) / 1048576"
    )
    assert promql_for("memory_percent", 60) == (
        "100 * max(avg_over_time(process_resident_memory_bytes[1m])"
        " / scalewise_container_memory_limit_bytes)"
    )
    assert promql_for("event_loop_lag", 60) == (
        "max(max_over_time(scalewise_event_loop_lag_seconds[1m]) and scalewise_workers)"
    )


@pytest.mark.parametrize(
    ("metric", "quantile"),
    [
        ("latency_p50", "0.5"),
        ("latency_p90", "0.9"),
        ("latency_p99", "0.99"),
        ("latency_p999", "0.999"),
        ("latency_max", "1"),
    ],
)
def test_any_percentile(metric: str, quantile: str) -> None:
    assert promql_for(metric, 60).startswith(f"histogram_quantile({quantile}, ")


def test_every_catalog_metric_has_a_translation() -> None:
    from scalewise.policy.metrics import METRICS

    for metric in METRICS:
        assert promql_for(metric, 60)


def test_aliases_translate_like_their_catalog_name() -> None:
    assert promql_for("loop_lag", 60) == promql_for("event_loop_lag", 60)
    assert promql_for("memory_percent_of_limit", 60) == promql_for("memory_percent", 60)


def test_unknown_metric_is_a_rule_error_listing_the_catalog() -> None:
    with pytest.raises(RuleError, match=r"'latency_p9x' has no PromQL translation.*rps"):
        promql_for("latency_p9x", 60)


def test_user_gauges_need_promql() -> None:
    with pytest.raises(RuleError, match="give the rule a promql: expression"):
        promql_for("gauge:queue_depth", 60)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (90, "90s"), (3600, "1h"), (86400 * 2, "2d"), (1.5, "1500ms"), (0.25, "250ms")],
)
def test_promql_durations(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -5, 0.0001, math.inf, math.nan])
def test_bad_windows_are_rule_errors(seconds: float) -> None:
    with pytest.raises(RuleError, match="window must be at least 1ms"):
        promql_duration(seconds)
