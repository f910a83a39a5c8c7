"""User gauges: numbers only the app knows (queue depth, pool size), set or sampled.

Rules read them as ``gauge:NAME``. Values land in each interval snapshot's ``gauges`` under
``user:NAME``, so they reach the store and the policy like every other figure.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

logger = logging.getLogger("scalewise")
PREFIX = "user:"


class GaugeSet:
    """Gauges set from app code (``set``) or read from a callable once a second (``register``).

    Example:
        >>> gauges = GaugeSet()
        >>> gauges.set("queue_depth", 12)
        >>> gauges.register("workers_idle", lambda: 3)
        >>> sorted(gauges.collect().items())
        [('user:queue_depth', 12.0), ('user:workers_idle', 3.0)]
    """

    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self._callables: dict[str, Callable[[], float]] = {}
        self._last_error: dict[str, float] = {}

    def set(self, name: str, value: float) -> None:
        self._values[name] = float(value)

    def register(self, name: str, read: Callable[[], float]) -> None:
        self._callables[name] = read

    def collect(self) -> dict[str, float]:
        """Every gauge as ``user:NAME``; a callable that fails or returns junk is skipped."""
        out = {PREFIX + k: v for k, v in self._values.items()}
        for name, read in list(self._callables.items()):
            try:
                value = float(read())
            except Exception:
                self._log(name)
                continue
            if math.isfinite(value):
                out[PREFIX + name] = value
        return out

    def _log(self, name: str) -> None:
        now = time.monotonic()
        if now - self._last_error.get(name, -1e9) >= 60.0:
            self._last_error[name] = now
            logger.exception("scalewise: gauge %r could not be read (skipped)", name)
