"""scalewise: measure a Python web service, decide when to scale, know what it will cost.

The public API is what ``__all__`` lists; every other module is internal. The measurement core
is imported eagerly (it is what ``app.add_middleware`` needs); the guards are imported on first
use, so an app that only measures does not load JWT or Redis support.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from scalewise.errors import (
    ConfigError,
    FitError,
    GuardError,
    HistogramError,
    LoadTestError,
    ScalewiseError,
    ScenarioError,
)
from scalewise.metrics.histogram import Histogram
from scalewise.metrics.monitor import Monitor
from scalewise.metrics.recorder import Recorder
from scalewise.metrics.windows import IntervalSnapshot, WindowStats
from scalewise.middleware.asgi import ScalewiseMiddleware
from scalewise.middleware.wsgi import ScalewiseWSGIMiddleware
from scalewise.options import EndpointPaths, MetricsOptions

if TYPE_CHECKING:
    from scalewise.guard.cache import TTLCache
    from scalewise.guard.cache_asgi import ResponseCacheMiddleware
    from scalewise.guard.coalesce import Coalescer, CoalesceTimeout, coalesce
    from scalewise.guard.concurrency import ConcurrencyLimiter
    from scalewise.guard.identity import IdentityResolver
    from scalewise.guard.ratelimit import RateLimiter
    from scalewise.guard.ratelimit_asgi import RateLimitMiddleware
    from scalewise.guard.ratelimit_wsgi import RateLimitWSGIMiddleware
    from scalewise.guard.setup import guard
    from scalewise.guard.shed_asgi import LoadShedMiddleware
    from scalewise.guard.timeouts import (
        BodyLimitMiddleware,
        BodyLimitWSGIMiddleware,
        TimeoutMiddleware,
    )

__version__ = "0.1.0"

#: Public names imported on first use: name → module.
_LAZY: Final = {
    "BodyLimitMiddleware": "scalewise.guard.timeouts",
    "BodyLimitWSGIMiddleware": "scalewise.guard.timeouts",
    "CoalesceTimeout": "scalewise.guard.coalesce",
    "Coalescer": "scalewise.guard.coalesce",
    "ConcurrencyLimiter": "scalewise.guard.concurrency",
    "IdentityResolver": "scalewise.guard.identity",
    "LoadShedMiddleware": "scalewise.guard.shed_asgi",
    "RateLimitMiddleware": "scalewise.guard.ratelimit_asgi",
    "RateLimitWSGIMiddleware": "scalewise.guard.ratelimit_wsgi",
    "RateLimiter": "scalewise.guard.ratelimit",
    "ResponseCacheMiddleware": "scalewise.guard.cache_asgi",
    "TTLCache": "scalewise.guard.cache",
    "TimeoutMiddleware": "scalewise.guard.timeouts",
    "coalesce": "scalewise.guard.coalesce",
    "guard": "scalewise.guard.setup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scalewise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BodyLimitMiddleware",
    "BodyLimitWSGIMiddleware",
    "CoalesceTimeout",
    "Coalescer",
    "ConcurrencyLimiter",
    "ConfigError",
    "EndpointPaths",
    "FitError",
    "GuardError",
    "Histogram",
    "HistogramError",
    "IdentityResolver",
    "IntervalSnapshot",
    "LoadShedMiddleware",
    "LoadTestError",
    "MetricsOptions",
    "Monitor",
    "RateLimitMiddleware",
    "RateLimitWSGIMiddleware",
    "RateLimiter",
    "Recorder",
    "ResponseCacheMiddleware",
    "ScalewiseError",
    "ScalewiseMiddleware",
    "ScalewiseWSGIMiddleware",
    "ScenarioError",
    "TTLCache",
    "TimeoutMiddleware",
    "WindowStats",
    "__version__",
    "coalesce",
    "guard",
]
