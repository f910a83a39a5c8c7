"""scalewise: measure a Python web service, decide when to scale, know what it will cost.

The public API is what ``__all__`` lists; every other module is internal.
"""

from __future__ import annotations

from scalewise.errors import ConfigError, HistogramError, ScalewiseError
from scalewise.metrics.histogram import Histogram
from scalewise.metrics.monitor import Monitor
from scalewise.metrics.recorder import Recorder
from scalewise.metrics.windows import IntervalSnapshot, WindowStats
from scalewise.middleware.asgi import ScalewiseMiddleware
from scalewise.middleware.wsgi import ScalewiseWSGIMiddleware
from scalewise.options import EndpointPaths, MetricsOptions

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "EndpointPaths",
    "Histogram",
    "HistogramError",
    "IntervalSnapshot",
    "MetricsOptions",
    "Monitor",
    "Recorder",
    "ScalewiseError",
    "ScalewiseMiddleware",
    "ScalewiseWSGIMiddleware",
    "WindowStats",
    "__version__",
]
