"""Fleet source: rule values from Prometheus's HTTP API instead of this process's windows.

When several instances run behind a load balancer, no single process sees the whole load.
Prometheus scrapes every instance's ``/metrics``; :class:`PrometheusSource` evaluates a rule's
``promql:`` (or the PromQL translation of its catalog metric, :func:`promql_for`) as an instant
query at the evaluation time and returns one number, or ``None`` for missing data.

Names and units are those of the in-process catalog (``scalewise.policy.metrics``), so one
threshold means the same in both modes: seconds for latency, a fraction for ``error_rate``,
percent for ``cpu_percent`` (of one core) and ``memory_percent``, MiB for ``memory_mb``.
Fleet semantics:

* traffic (rps, requests per day, error rate, latency, concurrency) is the whole fleet's;
* per-instance figures (CPU, memory, event-loop lag, busy ratio) take the **busiest
  instance** (``max``): a scale-up is about the instance that runs out first, and a fleet sum
  would grow with the replica count (the HPA likewise compares per-pod figures with a per-pod
  target). One instance's figure is already the sum over its workers, as in process mode;
* gauges are averaged over the rule's window (event-loop lag: its worst reading) before that
  ``max``; counters use ``rate()``.

User gauges (``gauge:NAME``) are not exported on ``/metrics``; such rules need ``promql:``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, NoReturn

import httpx

from scalewise.errors import RuleError, ScalewiseError
from scalewise.policy.model import Rule

logger = logging.getLogger("scalewise")

__all__ = ["REDUCE_LABEL", "PrometheusSource", "PrometheusUnavailable", "promql_for"]

#: A rule label that allows a ``promql:`` returning several series: ``max``, ``min``, ``sum``
#: or ``avg`` of them. Without it, several series are an error (the rule is ambiguous).
REDUCE_LABEL: Final = "scalewise_series"

_REDUCERS: Final[dict[str, Callable[[Sequence[float]], float]]] = {
    "max": max,
    "min": min,
    "sum": math.fsum,
    "avg": lambda xs: math.fsum(xs) / len(xs),
}

# Error types of Prometheus's API that mean "the query is wrong", not "the server is".
_QUERY_ERRORS: Final = frozenset({"bad_data", "execution"})


class PrometheusUnavailable(ScalewiseError):
    """Prometheus could not answer: unreachable, timed out, an HTTP error or a garbled reply.

    Unlike :class:`~scalewise.errors.RuleError` this says nothing about the rule; the
    evaluator treats it as missing data and warns (rate-limited) until Prometheus is back.
    """


# -- the catalog in PromQL -----------------------------------------------------------------

_REQUESTS: Final = "scalewise_http_requests_total"
_DURATION: Final = "scalewise_http_request_duration_seconds"
_INFLIGHT: Final = "scalewise_http_requests_in_flight"
_WORKERS: Final = "scalewise_workers"  # exported by every scalewise instance, even idle
_RSS: Final = "process_resident_memory_bytes"
_CPU: Final = "process_cpu_seconds_total"
_MEMORY_LIMIT: Final = "scalewise_container_memory_limit_bytes"
_QUEUE: Final = "scalewise_http_request_queue_seconds"
_BUSY: Final = "scalewise_worker_busy_seconds_total"
_LOOP_LAG: Final = "scalewise_event_loop_lag_seconds"


def _sel(name: str, selector: str, *matchers: str) -> str:
    """``name{matchers, selector}``: the user's selector narrows every metric to one service."""
    parts = [m for m in (*matchers, selector) if m]
    return f"{name}{{{','.join(parts)}}}" if parts else name


def _rps(w: str, s: str) -> str:
    # An idle fleet exports no request series yet; `or … * 0` turns that into 0, while a
    # Prometheus that sees no scalewise instance at all still answers "no data".
    return f"sum(rate({_sel(_REQUESTS, s)}[{w}])) or sum({_sel(_WORKERS, s)}) * 0"


_SERVER_ERRORS: Final = 'status="5xx"'


def _error_rate(w: str, s: str) -> str:
    errors = f"sum(rate({_sel(_REQUESTS, s, _SERVER_ERRORS)}[{w}]))"
    return f"({errors} or vector(0)) / sum(rate({_sel(_REQUESTS, s)}[{w}]))"


def _latency_avg(w: str, s: str) -> str:
    return (
        f"sum(rate({_sel(_DURATION + '_sum', s)}[{w}]))"
        f" / sum(rate({_sel(_DURATION + '_count', s)}[{w}]))"
    )


def _quantile(q: float, histogram: str = _DURATION) -> Callable[[str, str], str]:
    def expr(w: str, s: str) -> str:
        buckets = f"sum by (le) (rate({_sel(histogram + '_bucket', s)}[{w}]))"
        return f"histogram_quantile({q:g}, {buckets})"

    return expr


def _busiest(gauge: str) -> Callable[[str, str], str]:
    """Per-instance average over the window, then the busiest instance; only scalewise targets
    (``and scalewise_workers`` matches on job and instance), not every exporter's process_*."""

    def expr(w: str, s: str) -> str:
        return f"max(avg_over_time({_sel(gauge, s)}[{w}]) and {_sel(_WORKERS, s)})"

    return expr


def _worst(gauge: str) -> Callable[[str, str], str]:
    def expr(w: str, s: str) -> str:
        return f"max(max_over_time({_sel(gauge, s)}[{w}]) and {_sel(_WORKERS, s)})"

    return expr


def _scaled(factor: str, inner: Callable[[str, str], str]) -> Callable[[str, str], str]:
    return lambda w, s: f"{inner(w, s)} {factor}"


_CATALOG: Final[dict[str, Callable[[str, str], str]]] = {
    "rps": _rps,
    "requests_per_day": lambda w, s: f"86400 * ({_rps(w, s)})",
    "error_rate": _error_rate,
    "latency_avg": _latency_avg,
    # The upper bound of the slowest non-empty bucket: /metrics has no exact maximum.
    "latency_max": _quantile(1.0),
    "queue_time_p95": _quantile(0.95, _QUEUE),
    # Little's law: the fleet's request-seconds per second is its average concurrency, exactly,
    # whereas the in-flight gauge is only seen at scrape times.
    "concurrency_avg": lambda w, s: (
        f"sum(rate({_sel(_DURATION + '_sum', s)}[{w}])) or sum({_sel(_WORKERS, s)}) * 0"
    ),
    # Sampled at Prometheus's evaluation interval: a lower bound of the true peak.
    "concurrency_peak": lambda w, s: f"max_over_time(sum({_sel(_INFLIGHT, s)})[{w}:])",
    "cpu_percent": _scaled(
        "* 100", lambda w, s: f"max(rate({_sel(_CPU, s)}[{w}]) and {_sel(_WORKERS, s)})"
    ),
    "memory_mb": _scaled("/ 1048576", _busiest(_RSS)),  # MiB, as the in-process catalog
    "memory_percent": lambda w, s: (
        f"100 * max(avg_over_time({_sel(_RSS, s)}[{w}]) / {_sel(_MEMORY_LIMIT, s)})"
    ),
    "event_loop_lag": _worst(_LOOP_LAG),
    "busy_ratio": lambda w, s: f"clamp_max(max(rate({_sel(_BUSY, s)}[{w}])), 1)",
}
_ALIASES: Final = {"loop_lag": "event_loop_lag", "memory_percent_of_limit": "memory_percent"}
_PERCENTILE: Final = re.compile(r"latency_p(\d{2,3})")

_DURATION_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def promql_duration(seconds: float) -> str:
    """A PromQL range like ``5m``, ``90s`` or ``1500ms``: one unit, the largest that fits."""
    millis = round(seconds * 1000) if math.isfinite(seconds) else 0
    if millis <= 0:
        raise RuleError(f"window must be at least 1ms for PromQL, got {seconds!r} s")
    for unit, size in _DURATION_UNITS:
        if millis % (size * 1000) == 0:
            return f"{millis // (size * 1000)}{unit}"
    return f"{millis}ms"


def _catalog_entry(metric: str) -> Callable[[str, str], str]:
    name = _ALIASES.get(metric, metric)
    if name in _CATALOG:
        return _CATALOG[name]
    match = _PERCENTILE.fullmatch(name)
    if match:
        digits = match.group(1)
        return _quantile(int(digits) / 10 ** len(digits))
    if name.startswith("gauge:"):
        raise RuleError(
            f"metric {metric!r} is an in-process gauge that /metrics does not export; "
            "give the rule a promql: expression for fleet mode"
        )
    known = ", ".join([*sorted(_CATALOG), "latency_pNN"])
    raise RuleError(f"metric {metric!r} has no PromQL translation; expected one of: {known}")


def promql_for(metric: str, window: float, selector: str = "") -> str:
    """The PromQL for a catalog ``metric`` over ``window`` seconds, in base units.

    ``selector`` (e.g. ``job="api"``) is added to every metric selector, to pick one service
    out of a Prometheus that scrapes several.

    >>> promql_for("latency_avg", 60, 'job="api"')  # doctest: +NORMALIZE_WHITESPACE
    'sum(rate(scalewise_http_request_duration_seconds_sum{job="api"}[1m]))
     / sum(rate(scalewise_http_request_duration_seconds_count{job="api"}[1m]))'
    """
    return _catalog_entry(metric)(promql_duration(window), selector.strip().strip("{}"))


# -- the HTTP API ---------------------------------------------------------------------------


class PrometheusSource:
    """Rule values from Prometheus (``GET /api/v1/query``, an instant query at ``now``).

    >>> source = PrometheusSource("http://127.0.0.1:9090")  # doctest: +SKIP
    >>> source.value(rule, now=time.time())  # doctest: +SKIP
    12.5

    ``client`` (an ``httpx.Client``) is for tests and custom transports; without one, the
    source owns a client and :meth:`close` closes it.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
        selector: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.selector = selector
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def expression(self, rule: Rule) -> str:
        """The PromQL this source evaluates for ``rule`` (shown by ``status``)."""
        if rule.promql:
            return rule.promql
        return promql_for(rule.metric, rule.window, self.selector)

    def value(self, rule: Rule, now: float) -> float | None:
        """The rule's value at ``now``; ``None`` when Prometheus has no data (or NaN).

        Raises :class:`RuleError` when the query is wrong (bad PromQL, several series, a
        range vector) and :class:`PrometheusUnavailable` when Prometheus cannot answer.
        """
        values = self.query(self.expression(rule), now, what=f"promql for rule {rule.name!r}")
        return _one(values, rule)

    def query(self, expr: str, now: float, what: str = "promql") -> list[float]:
        """Every sample value of the instant query ``expr`` at ``now`` (NaN included).

        A scalar result is a one-element list; an empty list means no data.
        """
        body = self._get(expr, now, what)
        try:
            kind, result = body["data"]["resultType"], body["data"]["result"]
            if kind == "scalar":
                numbers = [float(result[1])]
            elif kind == "vector":
                numbers = [float(sample["value"][1]) for sample in result]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} sent an unexpected reply for {what}: {exc!r}"
            ) from exc
        if kind not in {"scalar", "vector"}:
            raise RuleError(
                f"{what} returned a {kind}, expected an instant vector or a scalar: {expr}"
            )
        for warning in body.get("warnings") or ():
            logger.debug("Prometheus warning for %s: %s", what, warning)
        return numbers

    def _get(self, expr: str, now: float, what: str) -> dict[str, Any]:
        """One GET, with every failure mapped to RuleError (the query) or Unavailable."""
        params = {"query": expr, "time": f"{now:.3f}", "timeout": f"{self.timeout:g}s"}
        try:
            response = self._client.get(
                f"{self.url}/api/v1/query", params=params, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} did not answer within {self.timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered HTTP {response.status_code} "
                f"without a JSON body (is the URL right?)"
            )
        if body.get("status") != "success" or response.is_error:
            _raise_api_error(body, response.status_code, self.url, what, expr)
        return body

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _raise_api_error(body: dict[str, Any], status: int, url: str, what: str, expr: str) -> NoReturn:
    """Prometheus's error envelope: bad_data (400) and execution (422) are the query's fault;
    timeout, canceled (503) and the rest are the server's."""
    kind = str(body.get("errorType") or "")
    message = str(body.get("error") or f"HTTP {status}")
    if kind in _QUERY_ERRORS:
        raise RuleError(f"{what} failed: {kind}: {message} (query: {expr})")
    raise PrometheusUnavailable(
        f"Prometheus at {url} failed on {what}: {kind or 'error'}: {message}"
    )


def _one(values: list[float], rule: Rule) -> float | None:
    """One number for the rule: the single series, or the reduction the rule asks for.

    NaN (0/0 on an idle fleet, a quantile of no requests) is missing data, like no series.
    """
    if len(values) > 1:
        reduce = _REDUCERS.get(rule.labels.get(REDUCE_LABEL, ""))
        if reduce is None:
            raise RuleError(
                f"promql for rule {rule.name} returned {len(values)} series; aggregate it, "
                f"e.g. with sum(), or set the label {REDUCE_LABEL}: max|min|sum|avg"
            )
        numbers = [v for v in values if not math.isnan(v)]
        return reduce(numbers) if numbers else None
    if not values or math.isnan(values[0]):
        return None
    return values[0]
