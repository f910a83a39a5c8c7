"""Runtime options of the measurement core, as one frozen value.

The middleware takes these as keyword arguments (no pydantic import on the request path);
``scalewise.config`` validates ``scalewise.yaml`` and ``SCALEWISE_*`` variables into the same
fields, with the same names, and builds this object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, TypedDict, TypeGuard

from scalewise.errors import ConfigError

#: Prometheus ``le`` buckets (seconds) for request duration: Prometheus's defaults extended to
#: 30 s and 60 s, because the seeds' thresholds reach 8 s averages.
DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Buckets for the time a request waited in the platform's router before the app saw it.
DEFAULT_QUEUE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Cap on rolling-window slots (history / interval), so a typo cannot allocate a huge ring.
MAX_SLOTS: Final = 100_000

_SECONDS_EXPECTED: Final = "a finite number of seconds greater than 0"
_PATH_EXPECTED: Final = "a path starting with '/', or None to switch it off"


@dataclass(frozen=True, slots=True)
class EndpointPaths:
    """Where the middleware serves its own endpoints; ``None`` switches one off."""

    health: str | None = "/health"
    ready: str | None = "/ready"
    scaling: str | None = "/health/scaling"
    metrics: str | None = "/metrics"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for name in ("health", "ready", "scaling", "metrics"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not value.startswith("/"):
                raise ConfigError("EndpointPaths", name, _PATH_EXPECTED, value)
            if value in seen:
                # Two endpoints on one path would silently shadow each other.
                expected = f"a path different from {seen[value]} ({value!r})"
                raise ConfigError("EndpointPaths", name, expected, value)
            seen[value] = name

    def all(self) -> tuple[str, ...]:
        return tuple(p for p in (self.health, self.ready, self.scaling, self.metrics) if p)


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """Everything the measurement core can be told. Defaults follow the seeds.

    Attributes:
        interval: seconds per rolling-window slot (the unit written to the store).
        history: seconds of slots kept in process (900 covers the 15-minute window); at least
            ``interval`` and at most ``MAX_SLOTS`` slots.
        max_routes: distinct route labels kept; later ones share the overflow label.
        max_series: Prometheus request series (method × route × status class) kept; later
            ones share ``OTHER``/``__other__`` labels, so a scrape stays bounded.
        buckets: Prometheus ``le`` bounds for request duration, in seconds.
        queue_buckets: ``le`` bounds for router queue time, in seconds.
        top_routes: routes listed in ``/health/scaling``.
        queue_time_header: read ``X-Request-Start``/``X-Queue-Start`` for queue time.
        response_time_header: add ``X-Response-Time`` to responses (seed 001).
        server_timing_header: add ``Server-Timing: app;dur=…`` to responses.
        exclude: path prefixes never measured (besides scalewise's own endpoints).
        multiprocess_dir: ``"auto"`` (share under gunicorn/uvicorn workers), a directory, or
            ``None`` to keep every worker's figures to itself.
        flush_interval: seconds between a worker's writes of its state for its siblings.
        loop_lag_interval: seconds between event-loop lag probes.
    """

    interval: float = 10.0
    history: float = 900.0
    max_routes: int = 100
    max_series: int = 1000
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    queue_buckets: tuple[float, ...] = DEFAULT_QUEUE_BUCKETS
    top_routes: int = 10
    queue_time_header: bool = True
    response_time_header: bool = False
    server_timing_header: bool = False
    exclude: tuple[str, ...] = ()
    multiprocess_dir: str | None = "auto"
    flush_interval: float = 1.0
    loop_lag_interval: float = 0.5
    paths: EndpointPaths = field(default_factory=EndpointPaths)

    def __post_init__(self) -> None:
        # Direct construction (middleware keyword arguments) skips pydantic, so the rules live
        # here too; the config loader maps these errors back to file or variable names.
        for name in ("interval", "history", "flush_interval", "loop_lag_interval"):
            _check_seconds(name, getattr(self, name))
        if self.history < self.interval or self.history / self.interval > MAX_SLOTS:
            expected = f"between interval ({self.interval}s) and {MAX_SLOTS} times interval"
            raise ConfigError("MetricsOptions", "history", expected, self.history)
        _check_int("max_routes", self.max_routes, 1)
        _check_int("max_series", self.max_series, 12)
        _check_int("top_routes", self.top_routes, 0)
        for name in ("buckets", "queue_buckets"):
            object.__setattr__(self, name, _checked_buckets(name, getattr(self, name)))
        object.__setattr__(self, "exclude", _checked_exclude(self.exclude))
        if self.multiprocess_dir is not None and (
            not isinstance(self.multiprocess_dir, str) or not self.multiprocess_dir
        ):
            expected = "'auto', a directory, or None"
            raise ConfigError("MetricsOptions", "multiprocess_dir", expected, self.multiprocess_dir)
        if not isinstance(self.paths, EndpointPaths):
            raise ConfigError("MetricsOptions", "paths", "an EndpointPaths", self.paths)


class MetricsOverrides(TypedDict, total=False):
    """The middleware's keyword options: the fields of :class:`MetricsOptions`, typed, so a
    type checker catches a misspelt or mistyped one (``ScalewiseMiddleware(app, intervall=5)``)
    and ``app.add_middleware(ScalewiseMiddleware, ...)`` type-checks under Starlette's
    ParamSpec signature, which a bare ``**kwargs: Any`` does not satisfy under mypy.
    A test keeps the keys equal to MetricsOptions' fields."""

    interval: float
    history: float
    max_routes: int
    max_series: int
    buckets: tuple[float, ...] | list[float]
    queue_buckets: tuple[float, ...] | list[float]
    top_routes: int
    queue_time_header: bool
    response_time_header: bool
    server_timing_header: bool
    exclude: tuple[str, ...] | list[str]
    multiprocess_dir: str | None
    flush_interval: float
    loop_lag_interval: float
    paths: EndpointPaths


def _is_number(value: object) -> TypeGuard[float]:
    # bool is an int subclass, but ``interval=True`` is always a mistake.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_seconds(name: str, value: object) -> None:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError("MetricsOptions", name, _SECONDS_EXPECTED, value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError("MetricsOptions", name, f"a whole number of at least {minimum}", value)


def _checked_buckets(name: str, values: object) -> tuple[float, ...]:
    """Buckets as a tuple; ``le`` bounds must rise strictly or Prometheus rejects the series."""
    if isinstance(values, str) or not isinstance(values, tuple | list) or not values:
        raise ConfigError("MetricsOptions", name, "a non-empty list of seconds", values)
    previous = 0.0
    for index, value in enumerate(values):
        if not _is_number(value) or not math.isfinite(value) or value <= previous:
            expected = _SECONDS_EXPECTED if index == 0 else f"a finite number above {previous}"
            raise ConfigError("MetricsOptions", f"{name}[{index}]", expected, value)
        previous = value
    return tuple(values)


def _checked_exclude(values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, tuple | list):
        raise ConfigError("MetricsOptions", "exclude", "a list of path prefixes", values)
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.startswith("/"):
            raise ConfigError(
                "MetricsOptions", f"exclude[{index}]", "a path starting with '/'", value
            )
    return tuple(values)
