"""User gauges: numbers only the app knows (queue depth, pool size), set or sampled.

Rules read them as ``gauge:NAME``. Values land in each interval snapshot's ``gauges`` under
``user:NAME``, so they reach the store and the policy like every other figure.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable

from scalewise.errors import ConfigError

logger = logging.getLogger("scalewise")
PREFIX = "user:"
_GAUGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class GaugeRegistry:
    """User gauges (queue depth, pool use …) for rules on ``gauge:NAME``.

    The app sets values or registers callables; whoever samples process gauges merges
    :meth:`collect` into each snapshot's ``gauges`` (keys ``user:NAME``).

    Example:
        >>> gauges = GaugeRegistry()
        >>> gauges.set("queue_depth", 12)
        >>> gauges.register("pool_in_use", lambda: 3)
        >>> sorted(gauges.collect().items())
        [('user:pool_in_use', 3.0), ('user:queue_depth', 12.0)]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._readers: dict[str, Callable[[], float]] = {}
        self._failing: set[str] = set()

    @staticmethod
    def _check(name: str, where: str) -> None:
        if not isinstance(name, str) or not _GAUGE_NAME.fullmatch(name):
            raise ConfigError(where, "name", "letters, digits and '_' (not first)", name)

    def set(self, name: str, value: float) -> None:
        """Record the gauge's current value."""
        self._check(name, "GaugeRegistry.set")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError("GaugeRegistry.set", name, "a number", value)
        with self._lock:
            self._values[name] = float(value)

    def register(self, name: str, read: Callable[[], float]) -> None:
        """Read the gauge from ``read()`` at every collection (replaces a set value)."""
        self._check(name, "GaugeRegistry.register")
        if not callable(read):
            raise ConfigError("GaugeRegistry.register", name, "a callable returning a number", read)
        with self._lock:
            self._readers[name] = read
            self._values.pop(name, None)

    def collect(self) -> dict[str, float]:
        """``{"user:NAME": value}``; a failing callable is skipped (logged once), never raised."""
        with self._lock:
            out = {f"user:{name}": value for name, value in self._values.items()}
            readers = list(self._readers.items())
        for name, read in readers:
            try:
                value = float(read())
            except Exception:
                if name not in self._failing:
                    self._failing.add(name)
                    logger.warning("scalewise: gauge %r failed; skipped", name, exc_info=True)
                continue
            self._failing.discard(name)
            if math.isfinite(value):
                out[f"user:{name}"] = value
        return out
