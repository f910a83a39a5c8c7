"""Render the Prometheus text exposition format (version 0.0.4) from a merged fleet view.

Pure: a :class:`~scalewise.metrics.monitor.FleetView` in, text out. Names follow Prometheus
conventions (base units, ``_total`` counters, ``_seconds`` and ``_bytes``), so
``promtool check metrics`` passes on a real scrape (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from scalewise.metrics.series import BucketCounts

if TYPE_CHECKING:
    from scalewise.metrics.monitor import FleetView
    from scalewise.metrics.process import ContainerLimits

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Recorder counter → (guard, event). Only these are rendered, so label sets stay bounded
#: whatever else is counted; one family per component with an ``event`` label keeps the
#: catalog open to new events without new metric names.
GUARD_EVENTS: Final[Mapping[str, tuple[str, str]]] = {
    "guard_shed": ("shed", "queue_full"),
    "guard_shed_queue_timeout": ("shed", "queue_timeout"),
    "guard_queued": ("shed", "queued"),
    "guard_rate_limited": ("rate_limit", "rejected"),
    "guard_rate_limit_unavailable": ("rate_limit", "unavailable"),
    "guard_invalid_token": ("rate_limit", "invalid_token"),
    "guard_request_timeouts": ("timeout", "timed_out"),
    "guard_body_too_large": ("body_limit", "rejected"),
}
#: Cache name (the counters' prefix) → its events: TTLCache's, plus the Coalescer's for ``cache``.
_TTL_EVENTS: Final = ("hits", "stale_hits", "misses", "coalesced", "evictions", "expirations")
CACHE_EVENTS: Final[Mapping[str, tuple[str, ...]]] = {
    "cache": (*_TTL_EVENTS, "rejected", "calls", "errors", "timeouts"),
    "response_cache": (*_TTL_EVENTS, "rejected"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _histogram(name: str, cell: BucketCounts, labels: Sequence[tuple[str, str]]) -> list[str]:
    lines = []
    for bound, running in zip((*cell.bounds, math.inf), cell.cumulative(), strict=True):
        le = "+Inf" if math.isinf(bound) else _number(bound)
        lines.append(f"{name}_bucket{_labels([*labels, ('le', le)])} {running}")
    lines.append(f"{name}_sum{_labels(labels)} {_number(cell.sum)}")
    lines.append(f"{name}_count{_labels(labels)} {cell.count}")
    return lines


def _gauge(name: str, help_text: str, value: float | None, kind: str = "gauge") -> list[str]:
    if value is None:
        return []
    return [*_header(name, kind, help_text), f"{name} {_number(value)}"]


def render(view: FleetView, limits: ContainerLimits | None = None) -> str:
    """The whole scrape body for every worker in ``view``."""
    table = view.series
    rows = sorted(table.requests.values(), key=lambda s: s.labels)
    out = _header(
        "scalewise_http_requests_total",
        "counter",
        "HTTP requests finished, by method, route template and status class.",
    )
    for s in rows:
        labels = list(zip(("method", "route", "status"), s.labels, strict=True))
        out.append(f"scalewise_http_requests_total{_labels(labels)} {s.duration.count}")
    out += _header(
        "scalewise_http_request_duration_seconds",
        "histogram",
        "Time from request start to the last response byte.",
    )
    for s in rows:
        labels = list(zip(("method", "route", "status"), s.labels, strict=True))
        out += _histogram("scalewise_http_request_duration_seconds", s.duration, labels)
    out += _header(
        "scalewise_http_time_to_first_byte_seconds",
        "histogram",
        "Time from request start to the first response body bytes.",
    )
    out += _histogram("scalewise_http_time_to_first_byte_seconds", table.ttfb_all(), [])
    out += _header(
        "scalewise_http_request_queue_seconds",
        "histogram",
        "Time a request waited in the platform router (X-Request-Start).",
    )
    out += _histogram("scalewise_http_request_queue_seconds", table.queue_time, [])
    counters = table.counters
    for key, name, help_text in (
        ("exceptions", "scalewise_http_exceptions_total", "Unhandled exceptions (counted as 500)."),
        (
            "disconnects",
            "scalewise_http_client_disconnects_total",
            "Requests whose client went away before the response completed.",
        ),
        (
            "route_overflow",
            "scalewise_route_overflow_total",
            "Requests labelled __other__ because the route cap was reached.",
        ),
        (
            "busy_seconds",
            "scalewise_worker_busy_seconds_total",
            "Time with at least one request in flight, summed over workers.",
        ),
        (
            "internal_errors",
            "scalewise_internal_errors_total",
            "Failures inside scalewise itself (the app's responses were unaffected).",
        ),
    ):
        out += _gauge(name, help_text, float(counters.get(key, 0)), kind="counter")
    out += _gauge(
        "scalewise_http_requests_in_flight",
        "Requests being served now, all workers.",
        float(view.inflight),
    )
    out += _gauge(
        "scalewise_workers", "Live workers merged into this scrape.", float(len(view.workers))
    )
    out += _guards(counters)
    out += _process(view.gauges, limits, view.exited_cpu_seconds)
    return "\n".join(out) + "\n"


def guard_counts(counters: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """Every known guard and cache event's count (zeros included): component → event → n."""
    out: dict[str, dict[str, int]] = {}
    for counter, (guard, event) in GUARD_EVENTS.items():
        out.setdefault(guard, {})[event] = int(counters.get(counter, 0))
    for cache, events in CACHE_EVENTS.items():
        out[cache] = {e: int(counters.get(f"{cache}_{e}", 0)) for e in events}
    return out


def _guards(counters: Mapping[str, float]) -> list[str]:
    """Known series only; a guard or cache shows (all its events, zeros included) from its
    first count on, so apps without guards keep their scrape as it was."""
    guards = [
        (("guard", guard), event, counters.get(counter, 0))
        for counter, (guard, event) in GUARD_EVENTS.items()
        if any(c in counters for c, (g, _) in GUARD_EVENTS.items() if g == guard)
    ]
    caches = [
        (("cache", cache), event, counters.get(f"{cache}_{event}", 0))
        for cache, events in CACHE_EVENTS.items()
        if any(f"{cache}_{e}" in counters for e in events)
        for event in events
    ]
    out: list[str] = []
    for name, rows, help_text in (
        (
            "scalewise_guard_events_total",
            guards,
            "Requests queued, refused or cut short by scalewise's guards, by guard and event.",
        ),
        (
            "scalewise_cache_events_total",
            caches,
            "Cache lookups, coalesced waits, removals and coalesced calls, by cache and event.",
        ),
    ):
        if rows:
            out += _header(name, "counter", help_text)
            for who, event, n in rows:
                out.append(f"{name}{_labels([who, ('event', event)])} {_number(n)}")
    return out


def _sum(gauges: Iterable[dict[str, float]], key: str) -> float | None:
    values = [g[key] for g in gauges if key in g]
    return sum(values) if values else None


def _process(
    gauges: list[dict[str, float]], limits: ContainerLimits | None, exited_cpu_seconds: float = 0.0
) -> list[str]:
    out: list[str] = []
    out += _gauge(
        "process_resident_memory_bytes",
        "Resident memory of all live workers.",
        _sum(gauges, "rss_bytes"),
    )
    out += _gauge(
        "process_cpu_seconds_total",
        "CPU time of all live workers.",
        _sum(gauges, "cpu_seconds"),
        kind="counter",
    )
    out += _gauge(
        "process_open_fds", "Open file descriptors of all live workers.", _sum(gauges, "open_fds")
    )
    lags = [g["loop_lag_seconds"] for g in gauges if "loop_lag_seconds" in g]
    out += _gauge(
        "scalewise_event_loop_lag_seconds",
        "Worst event-loop lag in the last second, over live workers.",
        max(lags) if lags else None,
    )
    if limits is not None:
        out += _gauge(
            "scalewise_container_memory_limit_bytes",
            "Memory limit of the container (cgroup), or host memory.",
            float(limits.memory_limit_effective),
        )
        cores = limits.cpu_limit_cores if limits.cpu_limit_cores else float(limits.host_cpus)
        out += _gauge(
            "scalewise_container_cpu_limit_cores",
            "CPU limit of the container in cores (cgroup), or host CPUs.",
            cores,
        )
    return out
