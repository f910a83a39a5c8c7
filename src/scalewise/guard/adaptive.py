"""Adaptive concurrency limits that lower themselves when latency climbs.

These follow Netflix's concurrency-limits library (github.com/Netflix/concurrency-limits),
which treats a server's concurrency limit like a TCP congestion window:

* :class:`AIMDLimit` — additive increase, multiplicative decrease. It grows by one while the
  limit is in use and cuts by ``backoff_ratio`` when a request is dropped (timed out, shed
  downstream) or takes longer than ``latency_threshold``. Loss-based: simple, predictable.
* :class:`Gradient2Limit` — compares a short-term RTT with a long-term exponential average.
  When the short one climbs above ``tolerance`` × the long one, queueing has begun and the
  limit shrinks in proportion (never by more than half per update, smoothed); while latency
  stays flat it grows by ``queue_size``. Latency-based: reacts before anything times out.
* :class:`WindowedLimit` — feeds a delegate one aggregated sample per window (average RTT,
  peak in flight, any drop) instead of every request, as Netflix pairs it with Gradient2.

All of them are pure and clock-driven: the caller passes ``now`` with each sample, so tests
step time with numbers. Every limit stays within ``[min_limit, max_limit]``.
"""

from __future__ import annotations

import math
from typing import Final, Protocol, runtime_checkable

from scalewise.errors import ConfigError

DEFAULT_MAX_LIMIT: Final = 200


@runtime_checkable
class AdaptiveLimit(Protocol):
    """A concurrency limit fed by finished requests."""

    @property
    def limit(self) -> int: ...

    def sample(self, rtt: float, inflight: int, dropped: bool, now: float) -> int:
        """Learn from one request: its duration in seconds, the requests in flight when it
        started, whether it was dropped; returns the new limit."""
        ...


class FixedLimit:
    """A limit that never moves (what a plain ``int`` limit becomes)."""

    def __init__(self, limit: int) -> None:
        self._limit = _whole("FixedLimit", "limit", limit, 1)

    @property
    def limit(self) -> int:
        return self._limit

    def sample(self, rtt: float, inflight: int, dropped: bool, now: float) -> int:
        return self._limit


class _Bounded:
    """Validation and clamping shared by the adaptive limits."""

    def __init__(self, initial_limit: int, min_limit: int, max_limit: int) -> None:
        owner = type(self).__name__
        self.min_limit = _whole(owner, "min_limit", min_limit, 1)
        self.max_limit = _whole(owner, "max_limit", max_limit, self.min_limit)
        initial = _whole(owner, "initial_limit", initial_limit, 1)
        self._estimate = float(self._clamp(initial))

    def _clamp(self, value: float) -> float:
        return max(float(self.min_limit), min(float(self.max_limit), value))

    @property
    def limit(self) -> int:
        return int(self._estimate)


class AIMDLimit(_Bounded):
    """Additive increase / multiplicative decrease (Netflix ``AIMDLimit``).

    Args:
        initial_limit: starting limit.
        min_limit, max_limit: bounds the limit never leaves.
        backoff_ratio: factor applied on a drop, in [0.5, 1).
        latency_threshold: seconds; a slower request counts as a drop (Netflix ``timeout``).

    Example:
        >>> limit = AIMDLimit(10, latency_threshold=0.5)
        >>> limit.sample(0.05, inflight=10, dropped=False, now=0.0)
        11
        >>> limit.sample(0.9, inflight=11, dropped=False, now=1.0)
        9
    """

    def __init__(
        self,
        initial_limit: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = DEFAULT_MAX_LIMIT,
        backoff_ratio: float = 0.9,
        latency_threshold: float = 5.0,
    ) -> None:
        super().__init__(initial_limit, min_limit, max_limit)
        self.backoff_ratio = _fraction("AIMDLimit", "backoff_ratio", backoff_ratio, 0.5, 1.0)
        self.latency_threshold = _positive("AIMDLimit", "latency_threshold", latency_threshold)

    def sample(self, rtt: float, inflight: int, dropped: bool, now: float) -> int:
        current = self.limit
        if dropped or rtt > self.latency_threshold:
            # Always drop by at least one, so a small limit still backs off.
            self._estimate = self._clamp(min(current - 1, int(current * self.backoff_ratio)))
        elif inflight * 2 >= current:  # grow only while the limit is actually in use
            self._estimate = self._clamp(current + 1)
        return self.limit


class Gradient2Limit(_Bounded):
    """Latency-gradient limit (Netflix ``Gradient2Limit``).

    Each sample updates a long-term RTT (exponential average over ``long_window`` samples,
    plain mean over the first ten) and then, unless the service is app-limited (fewer than
    half the limit in flight)::

        gradient  = clamp(tolerance × long_rtt / short_rtt, 0.5, 1.0)
        new       = limit × gradient + queue_size
        limit     = limit × (1 − smoothing) + new × smoothing

    When load ends, a long RTT more than twice the short one decays by 10 % per sample, so
    the limit recovers without waiting for the slow average.

    Example:
        >>> limit = Gradient2Limit(20, min_limit=5)
        >>> for _ in range(20):
        ...     _ = limit.sample(0.05, inflight=20, dropped=False, now=0.0)
        >>> limit.limit > 20
        True
        >>> for _ in range(20):
        ...     _ = limit.sample(0.5, inflight=20, dropped=False, now=0.0)
        >>> limit.limit < 20
        True
    """

    def __init__(
        self,
        initial_limit: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = DEFAULT_MAX_LIMIT,
        smoothing: float = 0.2,
        queue_size: int = 4,
        long_window: int = 600,
        tolerance: float = 1.5,
    ) -> None:
        super().__init__(initial_limit, min_limit, max_limit)
        self.smoothing = _fraction("Gradient2Limit", "smoothing", smoothing, 0.0, 1.0, closed=True)
        self.queue_size = _whole("Gradient2Limit", "queue_size", queue_size, 0)
        self.long_window = _whole("Gradient2Limit", "long_window", long_window, 1)
        self.tolerance = _positive("Gradient2Limit", "tolerance", tolerance)
        if self.tolerance < 1:
            raise ConfigError("Gradient2Limit", "tolerance", "a number of at least 1", tolerance)
        self.long_rtt = 0.0
        self.short_rtt = 0.0
        self._warmup = 0

    def _update_long(self, rtt: float) -> float:
        if self._warmup < 10:
            self._warmup += 1
            self.long_rtt += (rtt - self.long_rtt) / self._warmup  # running mean
        else:
            factor = 2.0 / (self.long_window + 1)
            self.long_rtt = self.long_rtt * (1 - factor) + rtt * factor
        return self.long_rtt

    def sample(self, rtt: float, inflight: int, dropped: bool, now: float) -> int:
        if not (rtt > 0 and math.isfinite(rtt)):
            return self.limit  # a zero or broken duration says nothing about queueing
        self.short_rtt = rtt
        long_rtt = self._update_long(rtt)
        if long_rtt / rtt > 2:
            self.long_rtt *= 0.9
        if inflight < self._estimate / 2:
            return self.limit  # app-limited: the limit is not being tested, leave it
        gradient = max(0.5, min(1.0, self.tolerance * long_rtt / rtt))
        target = self._estimate * gradient + self.queue_size
        smoothed = self._estimate * (1 - self.smoothing) + target * self.smoothing
        self._estimate = self._clamp(smoothed)
        return self.limit


class WindowedLimit:
    """Feed ``delegate`` one sample per window (Netflix ``WindowedLimit``).

    A window closes at the first sample after its end; it is passed on (average RTT, peak in
    flight, whether any request dropped) only if it holds ``window_size`` samples or more. The
    next window lasts twice the smallest RTT seen, kept within ``[min_window, max_window]``.
    Samples faster than ``min_rtt`` (cache hits, 404s) are ignored.
    """

    def __init__(
        self,
        delegate: AdaptiveLimit,
        *,
        min_window: float = 1.0,
        max_window: float = 1.0,
        window_size: int = 10,
        min_rtt: float = 100e-6,
    ) -> None:
        self.delegate = delegate
        self.min_window = _positive("WindowedLimit", "min_window", min_window)
        self.max_window = _positive("WindowedLimit", "max_window", max_window)
        if self.max_window < self.min_window:
            raise ConfigError("WindowedLimit", "max_window", "at least min_window", max_window)
        self.window_size = _whole("WindowedLimit", "window_size", window_size, 1)
        self.min_rtt = min_rtt
        self._next_update = -math.inf
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._smallest = math.inf
        self._peak = 0
        self._dropped = False

    @property
    def limit(self) -> int:
        return self.delegate.limit

    def sample(self, rtt: float, inflight: int, dropped: bool, now: float) -> int:
        if rtt < self.min_rtt:
            return self.limit
        self._count += 1
        self._sum += rtt
        self._smallest = min(self._smallest, rtt)
        self._peak = max(self._peak, inflight)
        self._dropped = self._dropped or dropped
        if now > self._next_update:
            count, total, peak, drop, smallest = (
                self._count,
                self._sum,
                self._peak,
                self._dropped,
                self._smallest,
            )
            self._reset()
            self._next_update = now + min(max(smallest * 2, self.min_window), self.max_window)
            if count >= self.window_size:
                self.delegate.sample(total / count, peak, drop, now)
        return self.limit


def adaptive_limit(
    algorithm: str,
    *,
    initial_limit: int = 20,
    min_limit: int = 1,
    max_limit: int = DEFAULT_MAX_LIMIT,
    latency_threshold: float = 5.0,
    window: float = 1.0,
) -> AdaptiveLimit:
    """The limit a config names: ``"gradient2"`` (windowed, as Netflix runs it) or ``"aimd"``."""
    bounds = {"initial_limit": initial_limit, "min_limit": min_limit, "max_limit": max_limit}
    if algorithm == "aimd":
        return AIMDLimit(**bounds, latency_threshold=latency_threshold)
    if algorithm == "gradient2":
        return WindowedLimit(Gradient2Limit(**bounds), min_window=window, max_window=window)
    raise ConfigError("adaptive_limit", "algorithm", "'gradient2' or 'aimd'", algorithm)


def _whole(owner: str, name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(owner, name, f"a whole number of at least {minimum}", value)
    return value


def _positive(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(owner, name, "a number greater than 0", value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(owner, name, "a number greater than 0", value)
    return float(value)


def _fraction(
    owner: str, name: str, value: object, low: float, high: float, *, closed: bool = False
) -> float:
    number = _positive(owner, name, value)
    if number < low or number > high or (number == high and not closed):
        bracket = "]" if closed else ")"
        raise ConfigError(owner, name, f"a number in [{low}, {high}{bracket}", value)
    return number
