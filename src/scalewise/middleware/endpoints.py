"""scalewise's own endpoints as plain functions returning (status, content type, body).

The ASGI and WSGI middleware both serve these, so the two stay identical. Bodies:

* ``/health``: liveness; no I/O, no locks beyond the recorder's, always 200 while the
  process can answer.
* ``/ready``: 200 when every registered readiness check passes, else 503.
* ``/health/scaling``: the JSON document described in ``docs/metrics.md`` (schema
  ``scalewise.health.scaling/v1``).
* ``/metrics``: Prometheus text format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from scalewise.metrics.exposition import CONTENT_TYPE, guard_counts, render
from scalewise.metrics.monitor import FleetView, Monitor
from scalewise.metrics.windows import LatencySummary, combine, route_table
from scalewise.options import EndpointPaths

SCHEMA: Final = "scalewise.health.scaling/v1"
WINDOWS: Final = (("1m", 60.0), ("5m", 300.0), ("15m", 900.0))
JSON: Final = "application/json"
Response = tuple[int, str, bytes]
Handler = Callable[[Monitor], Response]


def routes(paths: EndpointPaths) -> dict[str, Handler]:
    """Path → handler for the endpoints that are switched on."""
    return {
        path: handler
        for path, handler in (
            (paths.health, health),
            (paths.ready, ready),
            (paths.scaling, scaling),
            (paths.metrics, metrics),
        )
        if path
    }


def _json(status: int, payload: Any) -> Response:
    return status, JSON, json.dumps(payload, separators=(",", ":")).encode()


def health(monitor: Monitor) -> Response:
    return _json(200, {"status": "ok", "worker": monitor.recorder.worker})


def ready(monitor: Monitor) -> Response:
    failing = []
    for check in monitor.ready_checks:
        try:
            ok = bool(check())
        except Exception:
            ok = False
        if not ok:
            failing.append(getattr(check, "__name__", repr(check)))
    if not monitor.ready or failing:
        return _json(503, {"status": "not ready", "failing": failing})
    return _json(200, {"status": "ready"})


def metrics(monitor: Monitor) -> Response:
    return 200, CONTENT_TYPE, render(monitor.fleet(), monitor.limits).encode()


def scaling(monitor: Monitor) -> Response:
    return _json(200, scaling_document(monitor))


def _window(view: FleetView, seconds: float, interval: float) -> dict[str, Any]:
    since = (view.now // interval) * interval - seconds
    snaps = [s for s in view.snapshots if s.start >= since]
    covered = max(0.0, view.now - max(since, view.started))
    stats = combine(snaps, seconds, covered)
    queue = stats.queue_time
    return {
        "seconds": seconds,
        "covered_seconds": round(covered, 3),
        "requests": stats.requests,
        "rps": round(stats.rps, 4),
        "errors": stats.errors,
        "error_rate": round(stats.error_rate, 6),
        "client_errors": stats.client_errors,
        "disconnects": stats.disconnects,
        "latency": LatencySummary.of(stats.latency).to_dict(),
        "ttfb": LatencySummary.of(stats.ttfb).to_dict() if stats.ttfb.count else None,
        "queue_time": LatencySummary.of(queue).to_dict() if queue.count else None,
        "concurrency": {"peak": stats.inflight_peak, "avg": round(stats.avg_concurrency, 4)},
        "busy_ratio": round(stats.busy_ratio, 4),
    }


def _busy_by_worker(view: FleetView, interval: float) -> dict[str, float]:
    """Each live worker's share of the last minute spent serving (find the hot one)."""
    since = (view.now // interval) * interval - 60.0
    covered = max(1e-9, view.now - max(since, view.started))
    busy: dict[int, float] = dict.fromkeys(view.workers, 0.0)
    for snap in view.snapshots:
        if snap.start >= since and snap.worker in busy:
            busy[snap.worker] += snap.busy_seconds
    return {str(pid): round(min(1.0, seconds / covered), 4) for pid, seconds in busy.items()}


def _process(view: FleetView, monitor: Monitor) -> dict[str, Any]:
    def total(key: str) -> float | None:
        values = [g[key] for g in view.gauges if key in g]
        return sum(values) if values else None

    rss = total("rss_bytes")
    limit = monitor.limits.memory_limit_effective
    lags = [g["loop_lag_seconds"] for g in view.gauges if "loop_lag_seconds" in g]
    cpu = total("cpu_percent")
    cores = monitor.limits.cpu_limit_cores or float(monitor.limits.host_cpus)
    return {
        "cpu_percent": None if cpu is None else round(cpu, 2),
        "cpu_percent_of_limit": None if cpu is None else round(cpu / cores, 2),
        "rss_bytes": None if rss is None else int(rss),
        "memory_mb": None if rss is None else round(rss / 2**20, 1),
        "memory_limit_bytes": limit,
        "memory_limit_source": monitor.limits.memory_source,
        "memory_percent_of_limit": None if rss is None else round(100 * rss / limit, 2),
        "cpu_limit_cores": monitor.limits.cpu_limit_cores,
        "cpu_limit_source": monitor.limits.cpu_source,
        "open_fds": None if total("open_fds") is None else int(total("open_fds") or 0),
        "event_loop_lag_seconds": round(max(lags), 6) if lags else None,
        "inflight": view.inflight,
    }


def scaling_document(monitor: Monitor) -> dict[str, Any]:
    """The ``/health/scaling`` payload (schema ``scalewise.health.scaling/v1``)."""
    view = monitor.fleet()
    interval = monitor.options.interval
    route_since = (view.now // interval) * interval - 300.0
    route_snaps = [s for s in view.snapshots if s.start >= route_since]
    route_covered = max(0.0, view.now - max(route_since, view.started))
    return {
        "schema": SCHEMA,
        "timestamp": datetime.fromtimestamp(view.now, UTC).isoformat(),
        "uptime_seconds": round(view.now - view.started, 3),
        "workers": {
            "count": len(view.workers),
            "pids": view.workers,
            "exited": view.dead_workers,
            "busy_ratio_1m": _busy_by_worker(view, interval),
        },
        "windows": {name: _window(view, seconds, interval) for name, seconds in WINDOWS},
        "routes": {
            "window": "5m",
            "top": route_table(route_snaps, route_covered, monitor.options.top_routes),
        },
        "process": _process(view, monitor),
        # Guard and cache events since start, all workers (docs/metrics.md, "Guard counters").
        "guards": guard_counts(view.series.counters),
        "instance": monitor.profile.to_dict(),
        # Present when the app evaluates a policy (scalewise.yaml policy:); null otherwise.
        "policy": view.policy,
    }
