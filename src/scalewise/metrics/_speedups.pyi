"""Types of the optional C core (``_speedups.c``); see ``scalewise.metrics.histogram``."""

from collections.abc import Iterable

def configure(
    min_value: float, max_value: float, inv_log_gamma: float, offset: float, buckets: int, /
) -> None: ...

class HistogramCore:
    _counts: list[int]
    count: int
    sum: float
    min: float
    max: float
    def record(self, value: float, /) -> None: ...
    def record_all(self, values: Iterable[float], /) -> None: ...
